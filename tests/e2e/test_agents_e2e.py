"""Real agent CLIs against the tiny model: Claude Code (`claude -p`, Anthropic Messages)
and Codex (`codex exec`, OpenAI Responses), installed from npm at pinned versions (cached
under ~/.cache/glmkit/agent-clis), configured only from what `invoke up` prints, their
non-essential traffic off, with an API key and served under aliases."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .common import KEY, KEYED, invoke, port, project, serving

pytestmark = pytest.mark.e2e

PROJECT, PORT = KEYED.project, KEYED.port
OFF_PORT = port("agents-off")
CLIS = {"@anthropic-ai/claude-code": "2.1.332", "@openai/codex": "0.171.0"}


def cli_folder() -> Path:
    """Where the pinned CLIs are installed, once per version pair."""
    home = Path(os.environ.get("GLMKIT_HOME") or Path.home() / ".cache" / "glmkit")
    return home / "agent-clis" / "_".join(f"{n.rsplit('/', 1)[-1]}-{v}"
                                          for n, v in CLIS.items())


def installed(folder: Path) -> bool:
    return all((folder / "node_modules" / ".bin" / b).exists() for b in ("claude", "codex"))


@pytest.fixture(scope="module", autouse=True)
def npm_install() -> Iterator[subprocess.Popen[str] | None]:
    """npm's install of the CLIs, started before the module's first test so that it runs
    while the server starts (where nothing is cached yet: a fresh machine); None when
    they are installed already or npm is missing."""
    folder, npm = cli_folder(), shutil.which("npm")
    if installed(folder) or npm is None:
        yield None
        return
    proc = subprocess.Popen([npm, "install", "--prefix", str(folder), "--no-audit",
                             "--no-fund", *(f"{n}@{v}" for n, v in CLIS.items())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:  # the module ended first (-k, Ctrl-C): no stray npm
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def clis(npm_install: subprocess.Popen[str] | None) -> Path:
    """The pinned CLIs' bin folder."""
    folder = cli_folder()
    if not installed(folder):
        if npm_install is None:
            pytest.fail("the agent CLI tests need npm (apt-get install npm)")
        _, err = npm_install.communicate(timeout=900)
        assert npm_install.returncode == 0, err[-2000:]
    return folder / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def server(keyed_server: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The session's server with a key, aliases and cached tokens per response (for the
    agentic workload, the last test): KEYED, shared with test_faults_e2e.py."""
    return keyed_server


def printed(up_stdout: str, client: str) -> tuple[dict[str, str], list[str]]:
    """The environment and command `invoke up` printed for a client, the key variable
    filled in as a user's shell would."""
    lines = up_stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{client}"))
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        block.append(line.strip())
    env = {}
    for line in block[:-1]:
        name, _, value = shlex.split(line)[1].partition("=")
        env[name] = value.replace("$VLLM_API_KEY", KEY)
    return env, shlex.split(block[-1])


def server_log() -> str:
    return subprocess.run(["docker", "logs", f"{PROJECT}-vllm-1"], capture_output=True,
                          text=True, check=False).stdout


def run_cli(bins: Path, argv: list[str], env: dict[str, str], home: Path
            ) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    # No terminal and no input: `codex exec` would wait for more from stdin.
    return subprocess.run([str(bins / argv[0]), *argv[1:]], cwd=home, text=True,
                          capture_output=True, timeout=600, check=False,
                          stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "HOME": str(home),
                               "CODEX_HOME": str(home), **env})


def test_up_prints_each_agent_environment_naming_the_key(
        server: subprocess.CompletedProcess[str]) -> None:
    assert KEY not in server.stdout + server.stderr
    claude, _ = printed(server.stdout, "Claude Code")
    assert claude["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{PORT}"
    assert claude["ANTHROPIC_AUTH_TOKEN"] == KEY  # printed as "$VLLM_API_KEY"
    assert claude["ANTHROPIC_MODEL"] == "claude-glm"  # an alias the server answers to
    status = invoke("status", "--project", PROJECT)
    assert 'ANTHROPIC_AUTH_TOKEN="$VLLM_API_KEY"' in status.stdout
    assert KEY not in status.stdout


def test_claude_code_completes_a_prompt_through_the_messages_api(
        server: subprocess.CompletedProcess[str], clis: Path, tmp_path: Path) -> None:
    env, argv = printed(server.stdout, "Claude Code")
    done = run_cli(clis, argv, env, tmp_path / "claude")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"POST /v1/messages?beta=true HTTP/1.1" 200' in server_log()


def test_codex_completes_a_prompt_through_the_responses_api(
        server: subprocess.CompletedProcess[str], clis: Path, tmp_path: Path) -> None:
    env, argv = printed(server.stdout, "Codex")
    done = run_cli(clis, argv, env, tmp_path / "codex")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"POST /v1/responses HTTP/1.1" 200' in server_log()


def test_agentic_workload_reports_prefix_caching_on_vs_off_per_turn(
        server: object, key_file: Path) -> None:
    off = project("agents-off")
    # Its key from a file, the shared server's from a flag: both ways served for real.
    with serving(off, "--vendor", "cpu", "--port", str(OFF_PORT), "--enforce-eager",
                 "--bench-mode", "--no-smoke", "--api-key-file", str(key_file), "--",
                 "--enable-prompt-tokens-details"):
        done = invoke("bench", "--project", PROJECT, "--workload", "agentic",
                      "--off-project", off, "--sessions", "2", "--turns", "3", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "off/on" in done.stdout and KEY not in done.stdout + done.stderr
    report = json.loads(Path(done.stdout.split("saved ")[-1].split()[0]).read_text())
    turns = report["turns"]
    assert [t["turn"] for t in turns] == [0, 1, 2]
    assert all(t["ttft_on_ms"] > 0 and t["ttft_off_ms"] > 0 and t["ttft_ratio_off_on"]
               for t in turns)
    # Without prefix caching nothing is cached; with it, each turn after the first finds
    # the previous turn's prompt (and the shared system prompt) in the cache.
    assert all(t["cached_off"] == 0 for t in turns)
    assert all(t["cached_on"] > 0.5 * t["prompt_tokens"] for t in turns[1:])
