#!/bin/sh
# Build the docker cloud's instance image without a registry: the local Python test image
# (Debian's python3.11, `python -m tests.images`) plus provisioner and the libraries it needs,
# copied from this checkout's .venv. Extra arguments go to `python -m provisioner.clouds.docker_image`,
# e.g. --java (a jlink'ed runtime for agent mode) or --agent-jar FILE, --tag NAME.
#   agent_bootstrap/docker/build.sh [--java] [--tag provisioner-agent:latest]
set -eu
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
base=$("$PY" -m tests.images | tail -1)
exec "$PY" -m provisioner.clouds.docker_image --base "$base" "$@"
