"""`--nodes`, parsed once where settings are read: how many machines, and which.

"2" is two nodes simulated on this Docker engine (`invoke plan --nodes N` sizes for N
machines); "head=ssh://gpu1,w1=ssh://gpu2" names real machines, each reached through its
own Docker engine. Code after the settings sees a `Nodes`, never the text.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
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


def _machines(text: str) -> tuple[Node, ...]:
    nodes = []
    for rank, item in enumerate(part.strip() for part in text.split(",") if part.strip()):
        name, sep, host = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name) or not host:
            raise UsageError(f"--nodes: {item[:80]!r} is not NAME=HOST (e.g. head=ssh://gpu1).")
        # DOCKER_HOST and every message about the node carry it: printable ASCII only (a
        # newline or an escape sequence there would reach the terminal), a real port.
        if len(host) > 200 or not re.fullmatch(r"[\x21-\x7e]+", host):
            raise UsageError(f"--nodes: {name}'s host {host[:80]!r} must be printable ASCII "
                             "without spaces, at most 200 characters.")
        url = host if "://" in host else f"ssh://{host}"
        try:
            _ = urlsplit(url).port  # raises past 65535 or below 0
        except ValueError:
            raise UsageError(f"--nodes: {host[:80]!r} has no valid port (1 to 65535).") from None
        address = re.sub(r"^[a-z]+://([^@/]*@)?", "", url).split(":")[0].split("/")[0]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", address):
            raise UsageError(f"--nodes: cannot read a host name from {host[:80]!r}.")
        if _reaches_no_other_node(address):
            raise UsageError(f"--nodes: {address!r} ({name}) is not an address other nodes "
                             "can reach; give the machine's own host name or IP address.")
        nodes.append(Node(name=name, rank=rank, docker_host=url, address=address))
    if len(nodes) < 2:
        raise UsageError("--nodes needs at least two NAME=HOST entries, the head first.")
    if len({n.name for n in nodes}) != len(nodes):
        raise UsageError("--nodes names a node twice.")
    return tuple(nodes)


def _reaches_no_other_node(address: str) -> bool:
    """0.0.0.0 or loopback, in any spelling the resolver accepts ("0", "127.1", "0x0"):
    as a bind address it would open every interface, as a peer address it is this node."""
    if address.lower() == "localhost":
        return True
    try:
        packed = socket.inet_aton(address)
    except OSError:
        return False
    return packed == bytes(4) or packed[0] == 127
