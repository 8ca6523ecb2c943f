#!/usr/bin/env bash
# Set up glmkit on this machine: a virtual environment with the host-side kit (uv when
# available, else venv + pip), a working Docker engine with Compose v2, and the CPU
# vLLM image with the tiny GLM model. Safe to run again: every step skips done work.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's seconds, for a person and for scripts/fresh_times.py's record.
step_started=$SECONDS
step() { echo "[glmkit] $1 done in $((SECONDS - step_started)) s"; step_started=$SECONDS; }

venv=${GLMKIT_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    if command -v uv >/dev/null 2>&1; then
        uv venv "$venv"
    else
        python3 -m venv "$venv"
    fi
fi
if command -v uv >/dev/null 2>&1; then
    uv pip install --quiet --python "$venv/bin/python" -e '.[dev]'
else
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
fi
export PATH="$PWD/$venv/bin:$PATH"
step "virtual environment"

if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        PYTHON="$venv/bin/python" bash scripts/install-docker.sh
    else
        echo "Docker with Compose v2 is needed: https://docs.docker.com/engine/install/" >&2
        exit 1
    fi
fi
step "Docker engine"

# The CPU image starts FROM debian:bookworm-slim. Without a registry (air-gapped, or
# CI here), make it locally from Debian's packages instead of pulling it.
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    && ! docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    echo "no registry reachable: building debian:bookworm-slim with debootstrap"
    bash scripts/offline-base-image.sh debian:bookworm-slim
fi
step "base image"

invoke build --vendor cpu
step "CPU image"
invoke tiny-model
step "tiny model"
