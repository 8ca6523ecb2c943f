"""`invoke bench --workload agentic`: multi-turn agent sessions, prefix caching on vs off.

An agent's session is a long shared prefix (system prompt and tool definitions) and many
turns, each appending a tool call and its result. The kit generates such a trace
deterministically (a seed, word counts), and replays it with measure/agentic_client.py
inside each server's container (`docker exec`, as `vllm bench serve` runs for the
other workloads), all sessions at once. Per turn: TTFT, TPOT and the cached prompt
tokens of each response (`usage.prompt_tokens_details.cached_tokens`: serve with
`-- --enable-prompt-tokens-details`; the server's global counters cannot be split by
turn).

Prefix caching on vs off is two servers of the same image and model, one serving with
--bench-mode (`--no-enable-prefix-caching`), run one after the other in one bench call;
the report is per turn: each side's TTFT and cached tokens, and the TTFT ratio off/on.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from glmkit.errors import BenchFailed, CommandFailed, UsageError
from glmkit.files import Unreadable, read_json, write_json_once
from glmkit.host.settings import MAX_COUNT, BenchOptions
from glmkit.process import child_env, run, stream_lines
from glmkit.run.server import RunningServer
from glmkit.text import validation_reason

MAX_CLIENT_RESULT_BYTES = 16 * 1024 * 1024  # a row per turn of every session: a few MB
_Measure = Annotated[float, Field(ge=0, le=2.0 ** 53, allow_inf_nan=False)]

# Copied into the container and run there by its own Python; imports nothing of glmkit.
CLIENT = Path(__file__).parent / "agentic_client.py"
CONTAINER_DIR = "/tmp/glmkit-agentic"
CONTAINER_URL = "http://127.0.0.1:8000/v1"  # the server, seen from inside its container
DETAILS_FLAG = "--enable-prompt-tokens-details"

WORDS = ("agent", "build", "cache", "check", "code", "commit", "config", "deploy", "diff",
         "error", "file", "function", "git", "import", "kernel", "line", "log", "merge",
         "model", "module", "patch", "path", "prompt", "python", "query", "repo", "result",
         "run", "schema", "server", "shell", "source", "stack", "task", "test", "token",
         "tool", "trace", "type", "update", "value", "vector", "version", "worker", "write")
TOOL_NAMES = ("read_file", "run_tests", "search_code", "apply_patch", "list_dir")


@dataclass(frozen=True, kw_only=True)
class TraceSpec:
    """The generated trace's shape; the same spec gives the same trace."""

    sessions: int = BenchOptions.sessions
    turns: int = BenchOptions.turns
    system_words: int = 1200
    result_words: int = 150
    output_len: int = 32
    seed: int = 0


LIMITS = {"sessions": (1, 256), "turns": (1, 64), "output_len": (1, 4096)}


def make_trace(spec: TraceSpec) -> dict[str, Any]:
    """System prompt, tools and sessions of tool calls with their results, from the seed."""
    rng = random.Random(spec.seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    tools = [{"type": "function", "function": {
        "name": name, "description": text(40),
        "parameters": {"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string", "description": text(12)}}}}} for name in TOOL_NAMES]
    sessions = [{"user": f"Session {i}: " + text(30), "turns": [
        {"name": rng.choice(TOOL_NAMES), "arguments": {"path": f"src/{text(1)}_{t}.py"},
         "result": text(spec.result_words)} for t in range(spec.turns)]}
        for i in range(spec.sessions)]
    return {"spec": asdict(spec), "system": "You are a coding agent. " + text(spec.system_words),
            "tools": tools, "sessions": sessions, "output_len": spec.output_len}


def parse_spec(sessions: str | None, turns: str | None, output_len: str | None) -> TraceSpec:
    from glmkit.host.settings import number

    values = {}
    for name, text in (("sessions", sessions), ("turns", turns), ("output_len", output_len)):
        if text is not None:
            low, high = LIMITS[name]
            value = number(text, int, name.replace("_", "-"), low)
            if value > high:
                raise UsageError(f"--{name.replace('_', '-')} must be at most {high}, got "
                                 f"{value}.")
            values[name] = value
    return TraceSpec(**values)


@dataclass(frozen=True)
class TurnRow:
    """One turn index over every session: each side's means, and TTFT off/on."""

    turn: int
    prompt_tokens: float | None
    ttft_on_ms: float | None
    ttft_off_ms: float | None
    tpot_on_ms: float | None
    tpot_off_ms: float | None
    cached_on: float | None
    cached_off: float | None

    @property
    def ttft_ratio(self) -> float | None:
        """How many times longer the first token takes without prefix caching."""
        if self.ttft_on_ms and self.ttft_off_ms is not None:
            return self.ttft_off_ms / self.ttft_on_ms
        return None


def _mean(values: list[Any]) -> float | None:
    seen = [float(v) for v in values if isinstance(v, int | float)]
    return sum(seen) / len(seen) if seen else None


def per_turn(on: list[dict[str, Any]], off: list[dict[str, Any]]) -> list[TurnRow]:
    turns = sorted({r["turn"] for r in on + off})

    def of(rows: list[dict[str, Any]], turn: int, key: str) -> float | None:
        return _mean([r.get(key) for r in rows if r["turn"] == turn])

    return [TurnRow(t, of(on + off, t, "prompt_tokens"), of(on, t, "ttft_ms"),
                    of(off, t, "ttft_ms"), of(on, t, "tpot_ms"), of(off, t, "tpot_ms"),
                    of(on, t, "cached_tokens"), of(off, t, "cached_tokens"))
            for t in turns]


def check_pair(on: RunningServer, off: RunningServer) -> None:
    """Two servers that differ in prefix caching only, both reporting cached tokens."""
    if not on.prefix_caching:
        raise UsageError(f"{on.container} serves with --no-enable-prefix-caching: the first "
                         "project must cache prefixes (drop --bench-mode).")
    if off.prefix_caching:
        raise UsageError(f"{off.container} caches prefixes: serve the comparison project "
                         "with --bench-mode (--no-enable-prefix-caching).")
    if (on.image, on.served_model) != (off.image, off.served_model):
        raise UsageError(f"Prefix caching on vs off needs the same image and model: "
                         f"{on.served_model} in {on.image} vs {off.served_model} in "
                         f"{off.image}.")
    for server in (on, off):
        if DETAILS_FLAG not in server.serve_args:
            raise UsageError(f"{server.container} does not report cached tokens per "
                             f"response: serve it with `-- {DETAILS_FLAG}`.")


class _Turn(BaseModel):
    """One turn as the client (agentic_client.py, in the container) writes it."""

    model_config = ConfigDict(extra="ignore")
    session: StrictInt = Field(ge=0, le=MAX_COUNT)
    turn: StrictInt = Field(ge=0, le=MAX_COUNT)
    prompt_tokens: _Measure | None = None
    cached_tokens: _Measure | None = None
    output_tokens: _Measure | None = None
    ttft_ms: _Measure | None = None
    tpot_ms: _Measure | None = None
    e2e_ms: _Measure | None = None


class _ClientResult(BaseModel):
    model_config = ConfigDict(extra="ignore")
    started: float | None = None
    finished: float | None = None
    turns: list[_Turn] = Field(max_length=100_000)
    errors: list[Annotated[str, Field(max_length=1000)]] = Field(default=[], max_length=10_000)


def _client_result(path: Path, container: str) -> dict[str, Any]:
    """The client's out.json, copied out of the container: a plain file within a size
    limit, of the client's shape; a BenchFailed in one line otherwise."""
    try:
        return _ClientResult.model_validate(
            read_json(path, MAX_CLIENT_RESULT_BYTES)).model_dump()
    except Unreadable as err:
        raise BenchFailed(f"The agentic client's result in {container} cannot be read "
                          f"({err}).") from None
    except ValidationError as err:
        raise BenchFailed(f"The agentic client's result in {container} is not its shape "
                          f"({validation_reason(err)}).") from None


def replay(target: RunningServer, trace_file: Path, on_line: Callable[[str], None]
           ) -> dict[str, Any]:
    """The trace replayed inside the server's container; its per-turn rows."""
    run(["docker", "exec", target.container, "mkdir", "-p", CONTAINER_DIR])
    for path in (CLIENT, trace_file):
        run(["docker", "cp", str(path), f"{target.container}:{CONTAINER_DIR}/{path.name}"])
    argv = ["docker", "exec", "-e", "OPENAI_API_KEY", target.container, "python3",
            f"{CONTAINER_DIR}/{CLIENT.name}", f"{CONTAINER_DIR}/{trace_file.name}",
            f"{CONTAINER_DIR}/out.json", CONTAINER_URL, target.served_model]
    env = child_env({"OPENAI_API_KEY": target.api_key} if target.api_key else None)
    code, tail = stream_lines(argv, on_line, env=env)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run(["docker", "cp", f"{target.container}:{CONTAINER_DIR}/out.json", tmp])
        except CommandFailed:
            raise BenchFailed(f"The agentic client in {target.container} wrote no result "
                              f"(exit {code}): {' / '.join(tail[-3:])[:400]}") from None
        result = _client_result(Path(tmp) / "out.json", target.container)
    run(["docker", "exec", target.container, "rm", "-rf", CONTAINER_DIR], check=False)
    if result.get("errors"):
        raise BenchFailed(f"{len(result['errors'])} session(s) failed on {target.container}; "
                          f"first: {result['errors'][0]}")
    return result


@dataclass(frozen=True)
class AgenticReport:
    rows: list[TurnRow]
    path: Path
    spec: TraceSpec
    on: str
    off: str


def run_agentic(on: RunningServer, off: RunningServer, spec: TraceSpec, results_dir: Path,
                on_line: Callable[[str], None]) -> AgenticReport:
    """The trace on both servers, one after the other (they share the machine); the
    per-turn table saved with the other results."""
    check_pair(on, off)
    folder = results_dir / "agentic" / f"{time.strftime('%Y%m%d-%H%M%S')}-{on.container}"
    # A salt per run: prefixes cached by an earlier run (the same trace) are not reused,
    # those of this run's sessions and turns are.
    trace = {**make_trace(spec), "cache_salt": folder.name}
    with tempfile.TemporaryDirectory() as tmp:
        trace_file = Path(tmp) / "trace.json"
        trace_file.write_text(json.dumps(trace))
        results = {name: replay(server, trace_file, on_line)
                   for name, server in (("on", on), ("off", off))}
    rows = per_turn(results["on"]["turns"], results["off"]["turns"])
    write_json_once(folder / "report.json", {
        "spec": asdict(spec), "model": on.served_model, "image": on.image,
        "prefix_caching_on": on.container, "prefix_caching_off": off.container,
        "turns": [{**asdict(r), "ttft_ratio_off_on": r.ttft_ratio} for r in rows],
        "raw": results})
    return AgenticReport(rows, folder / "report.json", spec, on.container, off.container)


def bench_agentic(project: str, off_project: str | None, spec: TraceSpec, results_dir: Path,
                  on_line: Callable[[str], None]) -> AgenticReport:
    """`invoke bench --workload agentic --off-project NAME`: the project's server (prefix
    caching on) against NAME's (off)."""
    from glmkit.run.server import running_server

    if not off_project:
        raise UsageError("--workload agentic compares prefix caching on vs off: pass "
                         "--off-project NAME, a server of the same model started with "
                         f"--bench-mode (both with `-- {DETAILS_FLAG}`).")
    if off_project == project:
        raise UsageError(f"--off-project {off_project!r} is the project itself: name the "
                         "server without prefix caching.")
    _, on = running_server(project)
    _, off = running_server(off_project)
    return run_agentic(on, off, spec, results_dir, on_line)
