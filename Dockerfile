# wsload's container image: `make image` builds the wheel (make dist) and then
# this file, with docker or podman. The image holds the wheel's install and
# nothing else: no compiler (every dependency ships a manylinux wheel), no
# source tree, no pip cache.
#
#   docker run --rm wsload:latest run --demo -d 5
#   docker run --rm wsload:latest worker --connect tcp://COORDINATOR:5555 --keys /keys
# fully qualified, so podman needs no short-name alias
FROM docker.io/library/python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid/gid, so Kubernetes' runAsNonRoot can check it and the
# manifests in deploy/kubernetes/ can name it (runAsUser/fsGroup 10001).
RUN groupadd --system --gid 10001 wsload \
    && useradd --system --uid 10001 --gid wsload --create-home --home-dir /home/wsload \
       --shell /usr/sbin/nologin wsload

# .dockerignore lets only dist/wsload-*.whl into the build context.
COPY dist/ /tmp/dist/
RUN pip install /tmp/dist/wsload-*.whl && rm -rf /tmp/dist

USER 10001:10001
WORKDIR /home/wsload
# the coordinator's job port (wsload coordinator --bind tcp://*:5555)
EXPOSE 5555
ENTRYPOINT ["wsload"]
CMD ["--help"]
