"""`--nodes`, parsed once where settings are read: how many machines, and which.

"2" is two nodes simulated on this Docker engine (`invoke plan --nodes N` sizes for N
machines); "head=ssh://gpu1,w1=ssh://gpu2" names real machines, each reached through its
own Docker engine. Code after the settings sees a `Nodes`, never the text.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from glmkit.errors import UsageError

# A cluster of simulated nodes on one engine: more would be a typo, not a test.
MAX_SIMULATED = 16
MAX_NODES = 1 << 20  # `invoke plan --nodes N`: past this a number is a typo


@dataclass(frozen=True)
class Node:
    name: str
    rank: int
    docker_host: str | None  # None: this machine's engine
    address: str  # how the other nodes reach it

    @property
    def is_head(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Nodes:
    """The machines of a deployment: `count` of them, named in `machines` when real."""
    count: int
    machines: tuple[Node, ...] = ()  # (): simulated on this engine
    text: str = ""  # as given, for `invoke config` and a tune's winner file

    def __str__(self) -> str:
        return self.text or str(self.count)

    def cluster(self) -> tuple[Node, ...]:
        """The nodes a cluster runs on: the real machines, or `count` simulated ones."""
        if self.machines:
            return self.machines
        if not 2 <= self.count <= MAX_SIMULATED:
            raise UsageError(f"--nodes {self.count}: give 2 to {MAX_SIMULATED} nodes (1 is a "
                             "normal `up`).")
        return tuple(Node(name="head" if i == 0 else f"worker{i}", rank=i, docker_host=None,
                          address="head" if i == 0 else f"worker{i}")
                     for i in range(self.count))


def parse_nodes_setting(text: str) -> Nodes:
    """--nodes as given: a count (1 to MAX_NODES) or NAME=HOST machines, the head first."""
    text = text.strip()
    # ASCII digits only: str.isdigit() takes "²" (int() refuses it) and "٣"; 4,300 digits
    # and more are refused by int() itself.
    if re.fullmatch(r"[0-9]+", text):
        count = int(text) if len(text) <= 9 else MAX_NODES + 1
        if not 1 <= count <= MAX_NODES:
            raise UsageError(f"--nodes must be a whole number from 1 to {MAX_NODES}, got "
                             f"{text[:20]}{'…' if len(text) > 20 else ''}.")
        return Nodes(count=count, text=text)
    machines = _machines(text)
    return Nodes(count=len(machines), machines=machines, text=text)


def parse_nodes(text: str) -> tuple[Node, ...]:
    """'2' → two nodes on this engine; 'head=ssh://a,w1=ssh://b' → real machines."""
    return parse_nodes_setting(text).cluster()


# How a node's engine may be reached: SSH (the docker CLI's own transport, keys and host
# keys as ssh checks them), or TCP with TLS verified both ways (`engine_tls`). Anything
# else (plain tcp, http, a unix socket or fd on this machine) would send the secrets in
# the container-create request unencrypted or to an engine that is not that node's.
ENGINE_SCHEMES = ("ssh", "tcp")


def _shown(host: str) -> str:
    """A node's host as messages show it: never a password, at most 80 characters."""
    return repr(shown_engine(host)[:80])


def _machines(text: str) -> tuple[Node, ...]:
    nodes = []
    for rank, item in enumerate(part.strip() for part in text.split(",") if part.strip()):
        name, sep, host = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name) or not host:
            raise UsageError(f"--nodes: {_shown(item)} is not NAME=HOST (e.g. "
                             "head=ssh://gpu1).")
        # DOCKER_HOST and every message about the node carry it: printable ASCII only (a
        # newline or an escape sequence there would reach the terminal), a real port.
        if len(host) > 200 or not re.fullmatch(r"[\x21-\x7e]+", host):
            raise UsageError(f"--nodes: {name}'s host {_shown(host)} must be printable ASCII "
                             "without spaces, at most 200 characters.")
        url = host if "://" in host else f"ssh://{host}"
        try:
            parts = urlsplit(url)
        except ValueError:  # an unclosed [ of an IPv6 address
            raise UsageError(f"--nodes: cannot read a host name from {_shown(host)}.") \
                from None
        # Written as the checks after this one read it: urlsplit lowercases the scheme, but
        # the TLS check and the Docker SDK read the text ('TCP://' is plain HTTP to both).
        if parts.scheme not in ENGINE_SCHEMES or not url.startswith(f"{parts.scheme}://"):
            raise UsageError(f"--nodes: {name}'s engine {_shown(host)} is not ssh:// or tcp:// "
                             "(with TLS); glmkit sends your HF token and API key to it, so "
                             "reach it over SSH (ssh://user@host) or TLS-verified TCP.")
        if parts.password is not None or (parts.scheme == "tcp" and parts.username):
            # The docker CLI refuses a password in ssh:// (keys only); in a setting it would
            # be printed by `invoke config` and written into a tune's files.
            raise UsageError(f"--nodes: {name}'s engine {_shown(host)} holds a password; "
                             "reach it with an SSH key (ssh://user@host).")
        try:
            _ = parts.port  # raises past 65535 or below 0
        except ValueError:
            raise UsageError(f"--nodes: {_shown(host)} has no valid port (1 to 65535).") \
                from None
        address = re.sub(r"^[a-z]+://([^@/]*@)?", "", url).split(":")[0].split("/")[0]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", address):
            raise UsageError(f"--nodes: cannot read a host name from {_shown(host)}.")
        if _reaches_no_other_node(address):
            raise UsageError(f"--nodes: {address!r} ({name}) is not an address other nodes "
                             "can reach; give the machine's own host name or IP address.")
        nodes.append(Node(name=name, rank=rank, docker_host=url, address=address))
    if len(nodes) < 2:
        raise UsageError("--nodes needs at least two NAME=HOST entries, the head first.")
    if len({n.name for n in nodes}) != len(nodes):
        raise UsageError("--nodes names a node twice.")
    seen: dict[str, str] = {}
    for node in nodes:
        if (same := seen.setdefault(_machine_key(node.address), node.name)) != node.name:
            raise UsageError(f"--nodes: {same} and {node.name} are the same machine "
                             f"({node.address!r}); give each node its own.")
    return tuple(nodes)


def _machine_key(address: str) -> str:
    """One spelling per machine: an IPv4 address in any form the resolver accepts ("10.1"
    is 10.0.0.1), a name without case or its final dot."""
    try:
        return socket.inet_ntoa(socket.inet_aton(address))
    except OSError:
        return address.lower().rstrip(".")


def engine_tls(nodes: Nodes | None, env: Mapping[str, str]) -> None:
    """Every tcp:// engine of `nodes` verifies TLS (`tls_refusal`), or a UsageError."""
    for node in nodes.machines if nodes else ():
        if node.docker_host and (why := tls_refusal(node.docker_host, env)):
            raise UsageError(f"--nodes: {node.name}'s engine {why}")


def tls_refusal(docker_host: str, env: Mapping[str, str]) -> str | None:
    """Why a tcp:// engine may not be used (None: it may, or it is not tcp://): TLS
    verified as the docker CLI and the Docker SDK read it, DOCKER_TLS_VERIFY set
    (non-empty) and DOCKER_CERT_PATH (default ~/.docker) holding ca.pem, cert.pem and
    key.pem. Without them the secrets `up` passes would cross the network in the clear, to
    whoever answers."""
    if not docker_host.lower().startswith("tcp://"):
        return None
    folder = Path(env.get("DOCKER_CERT_PATH") or
                  Path(env.get("HOME") or Path.home()) / ".docker")
    missing = [name for name in ("ca.pem", "cert.pem", "key.pem")
               if not _is_file(folder / name)]
    if env.get("DOCKER_TLS_VERIFY") and not missing:
        return None
    why = "DOCKER_TLS_VERIFY is not set" if not env.get("DOCKER_TLS_VERIFY") else \
        f"{', '.join(missing)} missing in DOCKER_CERT_PATH ({str(folder)[:80]!r})"
    return (f"{_shown(docker_host)} is plain TCP ({why}); set DOCKER_TLS_VERIFY=1 and "
            "DOCKER_CERT_PATH to a folder with ca.pem, cert.pem and key.pem, or use ssh://.")


def shown_engine(docker_host: str) -> str:
    """A node's engine as `up` names it: the URL without a password."""
    return re.sub(r":[^/@]*@", ":***@", docker_host)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


# The loopback names Debian's and RHEL's /etc/hosts give.
_LOOPBACK_NAMES = frozenset({"localhost.localdomain", "localhost4", "localhost6",
                             "localhost4.localdomain4", "localhost6.localdomain6",
                             "ip6-localhost", "ip6-loopback"})


def _reaches_no_other_node(address: str) -> bool:
    """0.0.0.0 or loopback, in any spelling the resolver accepts ("0", "127.1", "0x0"):
    as a bind address it would open every interface, as a peer address it is this node."""
    name = address.lower().rstrip(".")
    # RFC 6761: localhost and every name under .localhost are loopback.
    if name == "localhost" or name.endswith(".localhost") or name in _LOOPBACK_NAMES:
        return True
    try:
        packed = socket.inet_aton(address)
    except OSError:
        return False
    return packed == bytes(4) or packed[0] == 127
