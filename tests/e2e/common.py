"""What the e2e modules share: running `invoke` as a user does, from the checkout, on a
machine that looks the same to glmkit whatever GPUs it has; this run's own project names
and ports (`project`, `port`); and the servers several modules share (started by
tests/e2e/conftest.py)."""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
# Tests serve on the CPU even on a GPU host, and their servers never come back by
# themselves after a crash or a reboot (`up` defaults to --restart unless-stopped).
TEST_ENV = {"GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json"), "GLMKIT_RESTART": "no",
            "VLLM_API_KEY": ""}


# Every compose project the e2e tests start is named PREFIX or PREFIX-something: what an
# interrupted session left up is found by name (tests/conftest.py) and nothing of the user's.
PREFIX = "glmkit-e2e"

# A test run's own projects and ports: two runs on one engine (two checkouts, two CI jobs
# on one host) never take each other's servers down or their ports. RUN:BASE, where RUN
# is in every project name (PREFIX-RUN-NAME) and BASE starts the run's block of ports;
# set by the run's first process (tests/conftest.py, pytest_configure) and inherited by
# the pytest-xdist workers it starts.
RUN_ENV = "GLMKIT_E2E_RUN"
# Each server's port: its place in the block.
PORTS = ("tiny", "crash", "parser", "hub", "key", "mn", "agents-off", "tune", "vis", "pd",
         "groups", "perturbed")
# Blocks of BLOCK ports from FIRST_PORT, below the ports Linux gives outgoing connections
# (ip_local_port_range, 32768-60999), so none is taken between the start and `invoke up`.
BLOCK, FIRST_PORT, LAST_PORT = 16, 20000, 32000
_claims: list[IO[Any]] = []  # this process's port blocks, locked for as long as it lives


def is_e2e_project(name: str) -> bool:
    return name == PREFIX or name.startswith(f"{PREFIX}-")


def start_run(env: MutableMapping[str, str] = os.environ) -> str:
    """A new run: its id and a block of free ports claimed for it, in env[RUN_ENV]."""
    env[RUN_ENV] = f"{secrets.token_hex(3)}:{_claim_block()}"
    return env[RUN_ENV]


def _claim_block() -> int:
    """The first port of a block no other run on this host holds (a lock file held while
    this process lives) and where nothing listens now."""
    blocks = list(range(FIRST_PORT, LAST_PORT - BLOCK + 1, BLOCK))
    random.shuffle(blocks)
    for base in blocks:
        lock = (Path(tempfile.gettempdir()) / f"glmkit-e2e-ports-{base}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if all(_free(port) for port in range(base, base + len(PORTS))):
            _claims.append(lock)
            return base
        lock.close()
    raise RuntimeError(f"No free block of {len(PORTS)} ports between {FIRST_PORT} and "
                       f"{LAST_PORT} for the e2e servers.")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _run() -> tuple[str, int]:
    value = os.environ.get(RUN_ENV) or start_run()
    match = re.fullmatch(r"([a-z0-9]{1,12}):([0-9]{4,5})", value)
    if match is None:
        raise RuntimeError(f"{RUN_ENV}={value[:40]!r} is not RUN:PORT (unset it: each run "
                           "makes its own).")
    return match[1], int(match[2])


def project(name: str) -> str:
    """This run's compose project NAME: PREFIX-RUN-NAME."""
    return f"{PREFIX}-{_run()[0]}-{name}"


def port(name: str) -> int:
    """This run's port for the server NAME (one of PORTS)."""
    return _run()[1] + PORTS.index(name)


def running_e2e_projects() -> list[str]:
    """The e2e compose projects with a container on this engine, running or not."""
    listed = subprocess.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project",
                             "--format", '{{.Label "com.docker.compose.project"}}'],
                            capture_output=True, text=True, check=False, timeout=60).stdout
    return sorted({name for name in listed.split() if is_e2e_project(name)})


def remove_run_leftovers() -> list[str]:
    """Remove what this run's projects leave once down, their compose files and volumes
    (compile caches, labelled with the project): no later run uses these project names.
    The volumes it removed."""
    prefix = project("")  # PREFIX-RUN-
    for path in (ROOT / "compose").glob(f"{prefix}*.yaml"):
        path.unlink(missing_ok=True)
    listed = subprocess.run(["docker", "volume", "ls", "--filter", "label=io.glmkit.managed",
                             "--format", '{{.Name}} {{.Label "io.glmkit.project"}}'],
                            capture_output=True, text=True, check=False, timeout=60).stdout
    names = [name for name, _, owner in (line.partition(" ") for line in listed.splitlines())
             if owner.startswith(prefix)]
    if names:
        subprocess.run(["docker", "volume", "rm", *names], capture_output=True, check=False,
                       timeout=120)
    return names


def invoke(*args: str, timeout: float = 900, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`python -m invoke ARGS` with the user's environment, less any API key in it. The
    project named is noted for the xdist controller's clean-up (tests/conftest.py)."""
    started = os.environ.get("GLMKIT_E2E_STARTED")
    if started and "--project" in args[:-1] and is_e2e_project(args[args.index("--project") + 1]):
        (Path(started) / args[args.index("--project") + 1]).touch()
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, check=False, timeout=timeout,
                          env={**os.environ, **TEST_ENV, **(env or {})})


@contextmanager
def serving(project: str, *up_args: str, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.CompletedProcess[str]]:
    """`invoke up` for a test module; `invoke down` afterwards even when the start failed,
    so a failed start leaves no container behind."""
    try:
        done = invoke("up", "--project", project, *up_args, env=env)
        print(f"{done.stdout}\n{done.stderr}")
        assert done.returncode == 0, done.stdout + done.stderr
        yield done
    finally:
        invoke("down", "--project", project, timeout=120, env=env)


def runs_of(project: str, before: Collection[Path] = ()) -> list[Path]:
    """The bench runs in results/ of `project`'s server, less those in `before`: another
    xdist worker's runs land in the same folder meanwhile."""
    found = []
    for run in sorted((ROOT / "results").glob("*")):
        try:
            meta = json.loads((run / "meta.json").read_text())
        except (OSError, ValueError):
            continue  # not a run, or one whose meta.json is being written
        # Compose names a container {project}-{service}-{index}, the services one word.
        if run not in before and str(meta.get("container")).rsplit("-", 2)[0] == project:
            found.append(run)
    return found


@dataclass(frozen=True)
class Shared:
    """A server that several tests (of one module or several) use as it is: started once
    a session by the fixture of the same name (tests/e2e/conftest.py)."""

    project: str
    port: int
    up_args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# The keyless tiny server of test_cpu_e2e.py. `up`'s default restart policy, named since
# tests otherwise run with --restart no (the crash test needs it); a context smaller than
# the tiny model's, so the recipe workload is fitted to it; a Hugging Face token in the
# environment that must never be written.
FAKE_TOKEN = "hf_e2eFakeTokenThatMustNeverBeWritten0000"
TINY = Shared(project("tiny"), port("tiny"), (
    "--vendor", "cpu", "--port", str(port("tiny")), "--restart", "unless-stopped",
    "--max-model-len", "2048"), env={"HF_TOKEN": FAKE_TOKEN})

# One server with an API key for test_agents_e2e.py and test_faults_e2e.py, the union of
# what each needs: an open port (0.0.0.0: faults; clients still reach it on 127.0.0.1),
# MTP speculative decoding (faults: tool calls parse the same with drafts), aliases
# (agents: the names Claude Code and Codex ask for), cached-token details (agents: the
# agentic workload). None of these changes what the other module's tests assert. The key
# is given as a flag here (faults checks that flag's value is never written); the agents'
# second server takes it from a file, so both ways stay tested.
KEY = "e2e-key-0123456789"
KEYED = Shared(project("key"), port("key"), (
    "--vendor", "cpu", "--port", str(port("key")), "--host", "0.0.0.0", "--api-key", KEY,
    "--enforce-eager", "--mtp", "--aliases", "claude-glm,gpt-glm", "--",
    "--enable-prompt-tokens-details"))
