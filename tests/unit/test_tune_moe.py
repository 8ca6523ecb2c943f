"""`invoke tune-moe` never harms what runs (#35 item 8), shown on CPU with fakes: of vLLM's
fused_moe module and its shipped-config folder (the tuner's side), and of `docker exec`
(the command's side). Not run here, as it needs a GPU: the CUDA-graph timing itself, the
kernel vLLM picks for a served checkpoint, and `os.killpg` on a real tuner's group."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.measure import moe_tuner
from glmkit.run.server import RunningServer

HEURISTIC = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 8}
SHIPPED = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
           "num_warps": 4, "num_stages": 3}
# vLLM's shipped files key on more sizes than the tuner times (1536, 3072).
SHIPPED_KEYS = (*moe_tuner.BATCH_SIZES, 1536, 3072)


class FakeVllm:
    """vllm.model_executor.layers.fused_moe.fused_moe, as far as the tuner asks it: the
    file name, the default tiles, and where its shipped configs lie."""

    def __init__(self, folder: Path) -> None:
        self.__file__ = str(folder / "fused_moe.py")
        (folder / "configs").mkdir(parents=True, exist_ok=True)
        self.names: list[tuple[Any, ...]] = []

    def get_config_file_name(self, e: int, n: int, dtype: str | None,
                             block: list[int] | None = None) -> str:
        self.names.append((e, n, dtype, block))
        return f"E={e},N={n},device_name=FAKE_GPU{',dtype=' + dtype if dtype else ''}.json"

    def get_default_config(self, m: int, e: int, n: int, k: int, topk: int,
                           dtype: str | None, block: list[int] | None) -> dict[str, int]:
        return dict(HEURISTIC)

    def ship(self, name: str, tiles: dict[str, int] = SHIPPED) -> None:
        (Path(self.__file__).parent / "configs" / name).write_text(
            json.dumps({str(k): tiles for k in SHIPPED_KEYS}))


def _args(out: Path, **over: Any) -> argparse.Namespace:
    values = {"experts": 64, "intermediate": 1536, "hidden": 2048, "topk": 4, "tp": 1,
              "ep": 1, "dtype": "bf16", "block": "", "out": str(out), "budget_s": 60.0,
              "candidates": 6, "seed": 0, "lease": None, **over}
    return argparse.Namespace(**values)


@pytest.fixture()
def vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeVllm:
    fake = FakeVllm(tmp_path / "vllm")

    def setup(args: argparse.Namespace, *shape: int) -> dict[str, Any]:
        experts, n, topk = shape or (args.experts, args.intermediate // args.tp, args.topk)
        return {"fm": fake, "n": n, "experts": experts, "topk": topk, "fp8": False,
                "block": None, "scales": {}}

    monkeypatch.setattr(moe_tuner, "_setup", setup)
    return fake


def _timer(monkeypatch: pytest.MonkeyPatch, table: Any) -> list[tuple[int, dict[str, int]]]:
    """Fake GPU timing: microseconds from `table(tokens, config)`."""
    calls: list[tuple[int, dict[str, int]]] = []

    def time_config(ctx: Any, args: Any, tokens: int, config: dict[str, int],
                    iters: int = 10) -> float:
        calls.append((tokens, dict(config)))
        return float(table(tokens, config))

    monkeypatch.setattr(moe_tuner, "time_config", time_config)
    return calls


NAME = "E=64,N=1536,device_name=FAKE_GPU.json"


def test_a_sampled_winner_over_the_default_does_not_replace_vllms_shipped_config(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 48 samples beat vLLM's default tiles but not the config vLLM ships: the tuner
    wrote its file anyway, and vLLM reads the tuned folder first."""
    vllm.ship(NAME)
    _timer(monkeypatch, lambda t, c: 10 if c == SHIPPED else 30 if c == HEURISTIC else 20)
    summary = moe_tuner.tune(_args(tmp_path / "out"))
    assert not (tmp_path / "out" / NAME).exists()
    assert summary["installed"] == "none" and summary["baseline"] == "shipped"
    assert all(b["kept"] is None for b in summary["batch_sizes"].values())


def test_a_win_over_the_shipped_config_is_installed_with_its_other_entries(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch) -> None:
    vllm.ship(NAME)
    winner = {**HEURISTIC, **moe_tuner.candidates(2, seed=0, count=6)[2]}
    _timer(monkeypatch, lambda t, c: 5 if c == winner and t == 16 else
           10 if c == SHIPPED else 30)
    summary = moe_tuner.tune(_args(tmp_path / "out"))
    installed = json.loads((tmp_path / "out" / NAME).read_text())
    assert summary["installed"] == "installed"
    assert installed["16"] == winner and summary["batch_sizes"]["16"]["speedup"] == 2.0
    # every other size, and the sizes the tuner does not time, keep what vLLM ships
    assert all(installed[str(k)] == SHIPPED for k in SHIPPED_KEYS if k != 16)
    assert not list((tmp_path / "out").glob(".*partial"))  # written whole, then renamed


def test_a_winner_only_noise_picked_is_not_installed(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the default tiles (no shipped config): faster once, not when timed again."""
    lucky = {**HEURISTIC, **moe_tuner.candidates(2, seed=0, count=6)[0]}
    seen: list[int] = []

    def table(tokens: int, config: dict[str, int]) -> float:
        if config == lucky and tokens == 8:
            seen.append(1)
            return 20 if len(seen) == 1 else 30
        return 30

    _timer(monkeypatch, table)
    summary = moe_tuner.tune(_args(tmp_path / "out"))
    assert summary["baseline"] == "default" and summary["installed"] == "none"
    assert len(seen) == 2 and not (tmp_path / "out" / NAME).exists()


@pytest.mark.parametrize("earlier", [{"1": {"BLOCK_SIZE_M": 128}}, [], "not json",
                                     "[" * 100_000, {"1": {"BLOCK_SIZE_M": "64"}},
                                     {"-1": {"BLOCK_SIZE_M": 64}}])
def test_an_earlier_file_that_no_longer_wins_or_is_malformed_is_removed(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch, earlier: Any) -> None:
    """The folder vLLM searches first keeps no file slower than what vLLM ships (an
    earlier 48-sample file) and none that is not a config (a file read back is data)."""
    vllm.ship(NAME)
    out = tmp_path / "out"
    out.mkdir()
    (out / NAME).write_text(earlier if isinstance(earlier, str) else json.dumps(earlier))
    _timer(monkeypatch, lambda t, c: 10 if c == SHIPPED else 40)
    summary = moe_tuner.tune(_args(out))
    assert summary["installed"] == "removed" and not (out / NAME).exists()


def test_an_earlier_file_that_still_wins_stays(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch) -> None:
    vllm.ship(NAME)
    out = tmp_path / "out"
    out.mkdir()
    mine = {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1}
    (out / NAME).write_text(json.dumps({"1": mine, "4096": mine}))
    _timer(monkeypatch, lambda t, c: 5 if c == mine else 10 if c == SHIPPED else 40)
    summary = moe_tuner.tune(_args(out))
    assert summary["installed"] == "installed" and summary["earlier"]
    assert json.loads((out / NAME).read_text())["64"] == mine


@pytest.mark.parametrize("lease_text", [None, "4242"])
def test_a_tuner_whose_command_ended_installs_nothing(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch,
        lease_text: str | None) -> None:
    """`invoke tune-moe` removes the lease when it ends: a tuner that survived its kill
    must not write the file a later `up` reads."""
    lease = tmp_path / "lease"
    if lease_text is not None:
        lease.write_text(lease_text)
    _timer(monkeypatch, lambda t, c: 5 if c != HEURISTIC else 30)
    with pytest.raises(SystemExit, match="nothing installed"):
        moe_tuner.tune(_args(tmp_path / "out", lease=str(lease)))
    assert not (tmp_path / "out" / NAME).exists()
    lease.write_text(f"{os.getpgid(0)}\n")  # still held: installed
    assert moe_tuner.tune(_args(tmp_path / "out", lease=str(lease)))["installed"] == \
        "installed"


@pytest.mark.parametrize("leader", [False, True])
def test_the_tuner_takes_a_group_of_its_own_before_anything_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leader: bool) -> None:
    groups: list[tuple[int, int]] = []

    def setpgid(pid: int, group: int) -> None:
        groups.append((pid, group))
        if leader:  # a session leader already leads its group: EPERM
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpgid", setpgid)
    monkeypatch.setattr(os, "getpgid", lambda pid: 4242)
    seen: list[str] = []

    def tune(args: argparse.Namespace) -> dict[str, Any]:
        seen.append(Path(args.lease).read_text())
        return {}

    monkeypatch.setattr(moe_tuner, "tune", tune)
    monkeypatch.setattr(moe_tuner, "shape_from_model",
                        lambda ref: pytest.fail("the model was read before the lease"))
    lease = tmp_path / "lease"
    assert moe_tuner.main(["--experts", "8", "--intermediate", "64", "--hidden", "32",
                           "--topk", "2", "--out", str(tmp_path), "--lease", str(lease)]) == 0
    assert groups == [(0, 0)] and seen == ["4242\n"]


@pytest.mark.parametrize(("tp", "ep", "shape"), [(4, 1, (64, 384, 4)), (1, 4, (16, 1536, 4)),
                                                 (1, 32, (2, 1536, 2))])
def test_the_file_is_named_by_one_ranks_experts_and_width(
        tmp_path: Path, vllm: FakeVllm, monkeypatch: pytest.MonkeyPatch, tp: int, ep: int,
        shape: tuple[int, int, int]) -> None:
    """With expert parallelism a rank holds E / EP whole experts (vLLM's w2 is
    [E / EP, hidden, N]); the tuner named the file by every expert."""
    assert moe_tuner.rank_shape(64, 1536, 4, tp, ep) == shape
    _timer(monkeypatch, lambda t, c: 10)
    moe_tuner.tune(_args(tmp_path / "out", tp=tp, ep=ep))
    assert vllm.names[-1][:2] == shape[:2]


def test_a_shape_that_does_not_split_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="do not split"):
        moe_tuner.main(["--experts", "160", "--intermediate", "1536", "--hidden", "32",
                        "--topk", "8", "--ep", "3", "--out", str(tmp_path)])


# --- the command's side: `docker exec`, faked ----------------------------------------------

class FakeDocker:
    """`glmkit.measure.moe_tune.run`: records each command; the tuner's exec answers
    `tuner` (a summary line, or an exception to raise as a timeout or Ctrl-C would)."""

    def __init__(self, tuner: Any) -> None:
        self.calls: list[list[str]] = []
        self.tuner = tuner

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        stdout = ""
        if any(a.endswith("moe_tuner.py") for a in argv) and argv[1] == "exec":
            if isinstance(self.tuner, BaseException):
                raise self.tuner
            stdout = json.dumps(self.tuner)
        return subprocess.CompletedProcess(argv, 0, stdout, "")

    def tuner_argv(self) -> list[str]:
        return next(a for a in self.calls if a[1] == "exec" and
                    any(w.endswith("moe_tuner.py") for w in a))


SUMMARY = {"file": "E=32,N=1536,device_name=NVIDIA_H200.json", "installed": "installed",
           "baseline": "shipped", "candidates_tried": 12, "dtype": "bf16",
           "batch_sizes": {"16": {"baseline_us": 10, "tuned_us": 8, "speedup": 1.25,
                                  "kept": "search"}}}


def _serving(monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
             labels: dict[str, str] | None = None, tuner: Any = None) -> FakeDocker:
    from glmkit.labels import ServerLabels
    from glmkit.measure import moe_tune

    server = RunningServer(container="glmkit-vllm-1", served_model="m", model_ref="org/m",
                           max_model_len=4096, vendor="cuda", image="vllm/vllm-openai:v0",
                           serve_args=("serve", "org/m", *args), base_url="http://x")
    written = ServerLabels(vendor="cuda", image="i", served_model="m", model_ref="org/m",
                           max_model_len=4096).to_labels()
    container = SimpleNamespace(labels={**written, **(labels or {})})
    monkeypatch.setattr(moe_tune, "running_server", lambda project: (container, server))
    docker = FakeDocker(SUMMARY if tuner is None else tuner)
    monkeypatch.setattr(moe_tune, "run", docker)
    return docker


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize(("args", "tp", "ep"), [
    (("--tensor-parallel-size", "4"), "4", "1"),
    (("--tensor-parallel-size", "4", "--enable-expert-parallel"), "1", "4"),  # TEP
    (("--data-parallel-size", "8", "--enable-expert-parallel"), "1", "8"),  # DEP
    (("-dp", "2", "-tp", "2"), "4", "1"),  # DP without EP: the MoE's TP is DP x TP
    (("-tp", "2", "-ep", "--no-enable-expert-parallel"), "2", "1"),
    (("--tensor-parallel-size=8", "-ep"), "1", "8"),
    (("--prefill-context-parallel-size", "2", "--enable-expert-parallel"), "1", "2"),
])
def test_the_tuner_is_given_the_split_the_servers_vllm_makes(
        monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], tp: str, ep: str) -> None:
    """Expert-parallel layouts were tuned as TP (E experts, N / TP): a file vLLM never
    looks for, while the command said the next `up` would use it."""
    from glmkit.measure.moe_tune import tune_moe

    docker = _serving(monkeypatch, args)
    result = tune_moe("glmkit", 60)
    argv = docker.tuner_argv()
    assert (_flag(argv, "--tp"), _flag(argv, "--ep")) == (tp, ep)
    assert (result.split.tp, result.split.ep) == (int(tp), int(ep))


@pytest.mark.parametrize(("args", "labels", "why"), [
    ((), {"io.glmkit.nodes": "2", "io.glmkit.engine": "ray", "io.glmkit.node_rank": "0"},
     "cluster of 2 nodes"),
    ((), {"io.glmkit.nodes": "2", "io.glmkit.engine": "dp"}, "cluster"),
    (("--data-parallel-size", "4", "--enable-expert-parallel", "--enable-eplb"), {},
     "redundant experts"),
    (("--tensor-parallel-size", "x" * 500), {}, "not a whole number"),
])
def test_a_layout_read_otherwise_is_refused_in_one_line_before_docker(
        monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], labels: dict[str, str],
        why: str) -> None:
    """A Ray head's container runs `ray start`, not the server's flags (its TP read as 1),
    and the other nodes read their own cache volume: the file reached none of them."""
    from glmkit.measure.moe_tune import tune_moe

    docker = _serving(monkeypatch, args, labels)
    with pytest.raises(UsageError, match=why) as refused:
        tune_moe("glmkit", 60)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300
    assert docker.calls == []


@pytest.mark.parametrize("stopped", [KeyboardInterrupt(),
                                     EnvironmentProblem("`docker exec …` did not finish")])
def test_a_timeout_or_ctrl_c_kills_the_tuners_group_in_the_container(
        monkeypatch: pytest.MonkeyPatch, stopped: BaseException) -> None:
    """Ending `docker exec`'s client left the tuner running in the container, where it
    later wrote the file the next `up` reads."""
    from glmkit.measure.moe_tune import LEASE, STOP_GROUP, tune_moe

    docker = _serving(monkeypatch, ("--tensor-parallel-size", "1"), tuner=stopped)
    with pytest.raises(type(stopped)):
        tune_moe("glmkit", 60)
    assert _flag(docker.tuner_argv(), "--lease") == LEASE
    after = docker.calls[docker.calls.index(docker.tuner_argv()) + 1:]
    assert after[0] == ["docker", "exec", "glmkit-vllm-1", "python3", "-c", STOP_GROUP,
                        LEASE, "5"]
    assert after[1] == ["docker", "exec", "glmkit-vllm-1", "rm", "-rf", "/tmp/glmkit-moe"]


def test_the_stop_code_ends_the_group_the_lease_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code `docker exec` runs in the container, run here with os.killpg faked."""
    from glmkit.measure.moe_tune import STOP_GROUP

    sent: list[tuple[int, int]] = []
    alive = {"group": True}

    def killpg(group: int, sig: int) -> None:
        sent.append((group, sig))
        if sig == signal.SIGTERM:
            alive["group"] = False
        elif not alive["group"]:
            raise ProcessLookupError

    monkeypatch.setattr(os, "killpg", killpg)
    monkeypatch.setattr("time.sleep", lambda s: None)
    lease = tmp_path / "lease"
    lease.write_text("4242\n")
    monkeypatch.setattr("sys.argv", ["-c", str(lease), "5"])
    with pytest.raises(SystemExit):
        exec(STOP_GROUP, {})
    assert sent[0] == (4242, signal.SIGTERM)
    sent.clear()
    monkeypatch.setattr("sys.argv", ["-c", str(tmp_path / "never-written"), "5"])
    with pytest.raises(SystemExit):
        exec(STOP_GROUP, {})
    assert sent == []  # no lease: nothing to end (and nothing it could install)


@pytest.mark.parametrize(("installed", "says"), [
    ("installed", "installed E=32,N=1536"), ("removed", "removed the earlier"),
    ("none", "installed nothing: no config beat the config vLLM ships")])
def test_the_message_says_what_vllm_will_use(monkeypatch: pytest.MonkeyPatch,
                                             installed: str, says: str) -> None:
    from rich.console import Console

    from glmkit.cli.views import print_tune_moe
    from glmkit.measure.moe_tune import tune_moe

    _serving(monkeypatch, ("-tp", "4", "-ep"), tuner={**SUMMARY, "installed": installed})
    console = Console(record=True, width=400)
    print_tune_moe(console, tune_moe("glmkit", 60))
    text = console.export_text()
    assert says in text and "EP 4" in text and "1.25x" in text
    assert ("Run `invoke up` again" in text) == (installed == "installed")


def test_a_result_line_without_its_fields_is_no_result() -> None:
    """`print_tune_moe` raised on a summary without `speedup` (#35 Low)."""
    from glmkit.measure.moe_tune import tuner_summary

    broken = {**SUMMARY, "batch_sizes": {"16": {"baseline_us": 1}}}
    with pytest.raises(UsageError, match="no result"):
        tuner_summary(json.dumps(broken))
    assert tuner_summary("noise\n" + json.dumps(SUMMARY) + "\n{x").file == SUMMARY["file"]
