#!/usr/bin/env bash
# Run a distributed load: the coordinator here, workers on HOSTS over ssh.
#
#   make load-distributed HOSTS="load1 load2" WORKERS_PER_HOST=4 \
#        COORDINATOR=10.0.0.5 KEYS=keys ARGS="--ws-url ws://svc:9000/ws -c 20000 -d 60"
#
# Each host needs wsload installed (pipx install wsload, or a venv on PATH) and
# a copy of the key directory without coordinator.key_secret. Workers run with
# --once, so they leave when the run ends; ssh sessions are closed on exit.
set -euo pipefail

: "${HOSTS:?set HOSTS to the worker hosts, e.g. HOSTS=\"load1 load2\"}"
: "${COORDINATOR:?set COORDINATOR to this machine's address as the workers see it}"
WORKERS_PER_HOST=${WORKERS_PER_HOST:-$(nproc)}
PORT=${PORT:-5555}
KEYS=${KEYS:-keys}
WSLOAD=${WSLOAD:-wsload}
REMOTE_WSLOAD=${REMOTE_WSLOAD:-wsload}
read -r -a hosts <<<"$HOSTS"
read -r -a args <<<"${ARGS:-}"

[ -f "$KEYS/coordinator.key_secret" ] || "$WSLOAD" keys generate "$KEYS"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

for host in "${hosts[@]}"; do
  ssh "$host" "$REMOTE_WSLOAD worker --connect tcp://$COORDINATOR:$PORT --keys $KEYS \
      --processes $WORKERS_PER_HOST --once --hello-timeout 120" &
  pids+=($!)
done

"$WSLOAD" coordinator --bind "tcp://0.0.0.0:$PORT" --keys "$KEYS" \
  --expect-workers $(( ${#hosts[@]} * WORKERS_PER_HOST )) "${args[@]}"
