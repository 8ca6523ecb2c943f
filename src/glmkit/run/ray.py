"""A Ray cluster's own steps, which `run.lifecycle` takes for a deployment with a head
command: once every node joined, start vLLM on the head (as run_cluster.sh users do),
and warn when the image's Ray cannot authenticate its control plane."""

from __future__ import annotations

import re
import time

from glmkit.errors import ServerFailed
from glmkit.plan.cluster import RAY_PORT
from glmkit.process import run
from glmkit.run.engine import compose_env

RAY_TOKEN_AUTH = (2, 52)  # the first Ray that reads RAY_AUTH_MODE=token


def serve_once_formed(head: str, docker_host: str | None, nodes: int,
                      command: tuple[str, ...], timeout_s: float = 300) -> None:
    """Wait until `ray status` on the head counts every node, then start `command` there."""
    env = compose_env(docker_host)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["docker", "exec", head, "ray", "status"], env=env, check=False)
        if status.stdout.count("node_") >= nodes:
            break
        time.sleep(2)
    else:
        raise ServerFailed(f"The Ray cluster did not reach {nodes} nodes.",
                           status.stdout[-2000:])
    run(["docker", "exec", "-d", head, *command], env=env)


def auth_warning(head: str, docker_host: str | None, image_ref: str) -> str | None:
    """A warning when a real machine's Ray predates token authentication: it ignores the
    token and its control plane answers anyone who reaches the port. (Simulated nodes
    publish no Ray port, so the caller asks only for real ones.)"""
    done = run(["docker", "exec", head, "ray", "--version"], env=compose_env(docker_host),
               check=False)
    found = re.search(r"version (\d+)\.(\d+)", done.stdout or "")
    if not found or (int(found[1]), int(found[2])) >= RAY_TOKEN_AUTH:
        return None
    return (f"warning: Ray {found[1]}.{found[2]} in {image_ref} has no token "
            f"authentication (Ray 2.52 added it): port {RAY_PORT} and Ray's other ports "
            "accept anyone who reaches them. Keep every node on a private network, or use "
            "an image with a newer Ray.")
