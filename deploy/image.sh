#!/usr/bin/env bash
# Build wsload's container image (Dockerfile at the checkout's top) with the engine
# that can build on this machine: docker when its engine answers, else podman.
#
#   make image                      # make dist, then this script: wsload:latest
#   make image IMAGE=wsload:dev
#   deploy/image.sh --check         # only say which engine would build (exit 1: none)
#   deploy/image.sh [TAG]           # build from dist/wsload-*.whl (make dist makes it)
#
# Where no engine can build (docker's client alone, with no engine running, is
# common on CI machines and in containers), it says why in one line and exits 1
# before anything is built.
set -euo pipefail

check_only=false
tag=wsload:latest
case "${1:-}" in
  --check) check_only=true ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  -*) echo "deploy/image.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  *) tag=$1 ;;
esac

engine=""
why=()
if command -v docker >/dev/null 2>&1; then
  if timeout 20 docker info >/dev/null 2>&1; then
    engine=docker
  else
    why+=("docker's client is installed but no Docker engine answers (docker info fails)")
  fi
else
  why+=("docker is not installed")
fi
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then
    if timeout 60 podman info >/dev/null 2>&1; then
      engine=podman
    else
      why+=("podman is installed but cannot run here (podman info fails)")
    fi
  else
    why+=("podman is not installed")
  fi
fi
if [ -z "$engine" ]; then
  reasons=$(printf '; %s' "${why[@]}")
  echo "make image: no container engine can build here: ${reasons#; }" >&2
  exit 1
fi
if $check_only; then
  echo "make image: building with $engine"
  exit 0
fi

cd "$(dirname "$0")/.."
shopt -s nullglob
wheels=(dist/wsload-*.whl)
if [ "${#wheels[@]}" -ne 1 ]; then
  echo "make image: need exactly one dist/wsload-*.whl (found ${#wheels[@]}): run make dist" >&2
  exit 1
fi
# The base image, pulled first so that an unreachable registry is one line too.
base=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' Dockerfile | head -n 1)
if ! "$engine" image inspect "$base" >/dev/null 2>&1 \
    && ! timeout 600 "$engine" pull --quiet "$base" >/dev/null 2>&1; then
  echo "make image: $engine cannot pull the base image $base (is its registry reachable?)" >&2
  exit 1
fi
exec "$engine" build --tag "$tag" --file Dockerfile .
