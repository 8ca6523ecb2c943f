"""Addresses and URLs of a server: the one list of loopback names, and URLs that clients
accept for IPv4, IPv6 and wildcard binds."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

CONTAINER_PORT = 8000  # vLLM's port inside every container glmkit starts
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connect_host(bind_host: str) -> str:
    """Where a client on this machine reaches a port published on `bind_host`."""
    if bind_host in WILDCARD:
        return "::1" if bind_host == "::" else "127.0.0.1"
    return bind_host


def http_url(bind_host: str, port: int | str) -> str:
    """http://HOST:PORT for a server published on `bind_host`; IPv6 in brackets."""
    host = connect_host(bind_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def published_url(port_bindings: Mapping[str, Any] | None) -> str | None:
    """The URL of a container's first published port, from `docker inspect`'s
    HostConfig.PortBindings; None for a container that publishes none (a worker)."""
    for bindings in (port_bindings or {}).values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                return http_url(binding.get("HostIp") or "0.0.0.0", binding["HostPort"])
    return None


def api_ready(base_url: str, timeout_s: float = 3) -> bool:
    """The one probe from this machine: vLLM's /health answers 200 now."""
    import requests  # imported late: keeps `invoke --list` fast

    try:
        return requests.get(f"{base_url}/health", timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


# The probe run inside a container (python3 is in every vLLM image; curl is not): the
# compose health check runs it as is (/health); a cluster's head runs it with
# GLMKIT_REQUEST=1 to send one real request too, since a head whose worker died still
# answers /health (measured: for minutes); a model group's member with GLMKIT_ASLEEP=1 is
# ready for the next to start only once its door has put it to sleep.
IN_CONTAINER_PROBE = """
import json, os, sys, urllib.request
host = os.environ.get("GLMKIT_HOST", "127.0.0.1")  # where the server binds, if not everywhere
base = "http://%s:%d" % ("[%s]" % host if ":" in host else host,
                         int(os.environ.get("GLMKIT_PORT", "CONTAINER_PORT")))
try:
    urllib.request.urlopen(base + "/health", timeout=5)
    if os.environ.get("GLMKIT_ASLEEP") == "1":  # a model group's member, slept by its door
        with urllib.request.urlopen(base + "/is_sleeping", timeout=5) as reply:
            if json.load(reply).get("is_sleeping") is not True:
                sys.exit(1)
    if os.environ.get("GLMKIT_REQUEST") == "1":
        body = json.dumps({"model": os.environ["GLMKIT_MODEL"], "max_tokens": 1,
                           "messages": [{"role": "user", "content": "ping"}]}).encode()
        req = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " +
                                              os.environ.get("VLLM_API_KEY", "")})
        urllib.request.urlopen(req, timeout=60)
except Exception as err:
    print(err)
    sys.exit(1)
""".replace("CONTAINER_PORT", str(CONTAINER_PORT))
