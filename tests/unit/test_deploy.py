"""The sequences behind the tasks: exports that do not copy this host, settings every
task resolves alike, a cluster that never stays half started, and runs without git.
(Every task against the engine: tests/integration/test_cli_process.py; node states read
from the engine: tests/integration/test_cluster_engine.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.errors import CommandFailed, UsageError

from .test_cli import ROOT
from .test_cli_trust import run_task


def _completed_download(cache: Path, model: str) -> None:
    snapshot = cache / "hub" / f"models--{model.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (cache / "glmkit-complete").mkdir()
    (cache / "glmkit-complete" / f"{model.replace('/', '--')}.json").write_text(
        json.dumps({"path": str(snapshot)}))


def test_k8s_export_does_not_copy_this_hosts_state(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    _completed_download(cache, "zai-org/GLM-4.6-FP8")
    owned = tmp_path / "hf-user"  # a normal user's cache: `up` would add DAC_OVERRIDE
    owned.mkdir()
    os.chown(owned, 1000, 1000)
    project = "k8s-portable"
    for hf_home in (cache, owned):
        if hf_home == owned:  # the invoking user is that normal user
            monkeypatch.setattr(os, "getuid", lambda: 1000)
        code, _, err = run_task(monkeypatch, capsys, tmp_path, "export", "k8s", "--vendor",
                                "rocm", "--model", "zai-org/GLM-4.6-FP8", "--gpu", "mi300x",
                                "--gpus", "4,5,6,7", "--tp", "4", "--project", project,
                                env={"HF_HOME": str(hf_home)})
        assert code == 0, err
        text = (tmp_path / "compose" / f"{project}.k8s.yaml").read_text()
        for host_state in ("HF_HUB_OFFLINE", "HIP_VISIBLE_DEVICES", "DAC_OVERRIDE"):
            assert host_state not in text, (hf_home, host_state)
        pod = list(yaml.safe_load_all(text))[1]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["amd.com/gpu"] == 4


def test_k8s_export_without_the_schemas_says_so(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    # A normal install has no kubernetes-validate: a note, not a traceback.
    monkeypatch.setitem(sys.modules, "kubernetes_validate", None)  # its import fails
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "export", "k8s", "--vendor",
                              "cuda", "--model", "zai-org/GLM-4.6-FP8", "--gpu", "h200",
                              "--project", "k8s-novalidate")
    assert code == 0, err
    assert "not validated" in out and "glmkit[k8s]" in out
    assert (tmp_path / "compose" / "k8s-novalidate.k8s.yaml").is_file()


def test_a_boolean_set_in_config_can_be_unset_on_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    def config(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return run_task(monkeypatch, capsys, tmp_path, "config", *args, env=env)

    _, out, _ = config(env={"GLMKIT_ENFORCE_EAGER": "1"})
    row = next(line for line in out.splitlines() if "enforce_eager" in line)
    assert "True" in row and "environment" in row
    _, out, _ = config("--no-enforce-eager", env={"GLMKIT_ENFORCE_EAGER": "1"})
    row = next(line for line in out.splitlines() if "enforce_eager" in line)
    assert "False" in row and "flag" in row
    code, _, err = config("--enforce-eager", "--no-enforce-eager")
    assert code == 2 and "contradict" in err


def test_extra_args_from_the_environment_are_shell_words() -> None:
    from glmkit.host.settings import resolve_settings

    settings, _ = resolve_settings({}, {}, {
        "GLMKIT_EXTRA_ARGS": '--override-generation-config \'{"temperature": 0.6}\''})
    assert settings.extra_args == ("--override-generation-config", '{"temperature": 0.6}')


def test_bench_metadata_without_git_on_path(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from glmkit.measure.results import _git_commit

    monkeypatch.setenv("PATH", str(tmp_path))  # no git there: nothing to start
    assert _git_commit(ROOT) is None


def test_a_cluster_that_fails_to_start_stops_every_started_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from glmkit.plan.cluster import build_cluster, parse_nodes
    from glmkit.run import lifecycle

    from .helpers import plan_for

    base = plan_for(vendor="cuda", model="zai-org/GLM-4.5", gpu="h100", tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes("head=ssh://gpu1,w1=ssh://gpu2"), "mp",
                            tp=None, pp=None, gpus_per_node=8)
    calls: list[tuple[str, str]] = []

    def fake_run(argv: list[str], *, env: dict[str, str], **_: Any) -> Any:
        action = "up" if "up" in argv else "down"
        calls.append((env["DOCKER_HOST"], action))
        if action == "up" and env["DOCKER_HOST"] == "ssh://gpu2":
            raise CommandFailed(argv, 1, "", "gpu2: connection refused")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(lifecycle, "run", fake_run)
    monkeypatch.setattr(lifecycle, "refuse_broken", lambda cluster: None)
    with pytest.raises(CommandFailed):
        lifecycle.start(cluster, [Path("head.yaml"), Path("w1.yaml")], {}, Console(), {})
    assert calls == [("ssh://gpu1", "up"), ("ssh://gpu2", "up"),
                     ("ssh://gpu1", "down"), ("ssh://gpu2", "down")]


def _kinds() -> dict[str, Any]:
    from glmkit.plan.cluster import build_cluster, parse_nodes

    from .helpers import plan_for
    from .test_pd import pd

    base = plan_for(vendor="cpu", tp=1, nodes="2")
    return {"server": plan_for(vendor="cpu"), "pd_cluster": pd(vendor="cpu"),
            "cluster": build_cluster(base, parse_nodes("2"), "mp", tp=None, pp=None,
                                     gpus_per_node=1)}


@pytest.mark.parametrize(("kind", "stop"), [
    ("server", ["stop", "-t", "5"]), ("cluster", ["down", "-t", "5", "--remove-orphans"]),
    ("pd_cluster", ["down", "-t", "5", "--remove-orphans"])])
def test_every_kind_stops_on_ctrl_c_while_it_waits(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                   stop: list[str]) -> None:
    # One lifecycle for all three: Ctrl-C (or any failure) once the parts were created
    # stops them; one server keeps its stopped container for `invoke logs`.
    from rich.console import Console

    from glmkit.run import lifecycle

    deployment = _kinds()[kind]
    calls: list[list[str]] = []
    monkeypatch.setattr(lifecycle, "run", lambda argv, **_: calls.append(argv))
    monkeypatch.setattr(lifecycle, "part_states", lambda _: [])

    def interrupted(*_: Any) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(lifecycle, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.start(deployment, [Path("a.yaml")], {}, Console(), {})
    assert [argv[argv.index("-p") + 2:] for argv in calls] == [
        ["-f", "a.yaml", "up", "-d", "--remove-orphans"], stop]


@pytest.mark.parametrize("kind", ["server", "cluster", "pd_cluster"])
def test_a_part_that_dies_before_healthy_ends_the_wait_at_once(
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from glmkit.errors import ServerFailed
    from glmkit.run import lifecycle

    deployment = _kinds()[kind]
    parts = deployment.parts()
    dead = parts[-1]
    log = SimpleNamespace(name="c", logs=lambda tail: b"boom: the last line")
    states = [lifecycle.PartState(p, log, "exited" if p == dead else "running",
                                  137 if p == dead else 0, 0) for p in parts]
    monkeypatch.setattr(lifecycle, "part_states", lambda _: states)
    monkeypatch.setattr(lifecycle, "probe", lambda *_: pytest.fail("probed a dead group"))
    with pytest.raises(ServerFailed, match=f"{dead.label} exited with code 137 before") as err:
        lifecycle.wait(deployment, Console(), timeout_s=30)
    assert err.value.log_tail == "boom: the last line"
    assert lifecycle.TERMINAL_STATES == ("exited", "dead", "missing", "restarting")
    # Restarted by its policy and running again before it was ever healthy: as dead.
    states[-1] = lifecycle.PartState(dead, log, "running", 0, 1)
    monkeypatch.setattr(lifecycle, "probe", lambda *_: False)
    monkeypatch.setattr(lifecycle, "api_ready", lambda url: False)
    with pytest.raises(ServerFailed, match=f"{dead.label} exited with code unknown and was "
                                           "restarted before it became healthy"):
        lifecycle.wait(deployment, Console(), timeout_s=30)


def test_plain_names_reach_bench_before_any_server_lookup() -> None:
    from glmkit.measure.bench import BenchRequest, run_bench

    with pytest.raises(UsageError, match="plain name"):
        run_bench(BenchRequest(project="none", label="a/../../b"), Path("results"), ROOT,
                  None, None)  # type: ignore[arg-type]


def test_a_bench_request_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """#29: run_bench checked the request's workload, batches and data set before looking
    up the server, then parsed them all again to start the run (the VisionArena folder
    was located, and hashed, twice). Now once, and the run starts from that parse."""
    from glmkit.measure import bench
    from glmkit.measure.bench_data import DatasetSource
    from glmkit.plan.model_facts import ModelFacts
    from glmkit.run.server import RunningServer

    located: list[str | None] = []
    source = DatasetSource(Path("/data/va"), "sample-abc", "local")

    def locate(path: str | None, hf_cache: Path) -> DatasetSource:
        located.append(path)
        return source

    started: list[tuple[Any, ...]] = []

    class Started(Exception):
        pass

    def start_run(results_dir: Path, target: Any, wl: Any, mode: str, points: list[Any],
                  *rest: Any) -> Any:
        started.append((wl.dataset_path, wl.dataset_revision, mode, len(points)))
        raise Started

    target = RunningServer(container="c", served_model="glm-v", model_ref="m",
                           max_model_len=100_000, vendor="cpu", image="i", serve_args=(),
                           base_url="http://127.0.0.1:8000", facts=ModelFacts(vision=True))
    monkeypatch.setattr(bench, "locate_visionarena", locate)
    monkeypatch.setattr(bench, "running_server", lambda project, model=None: ("c", target))
    monkeypatch.setattr(bench, "stage", lambda src, container: "/tmp/va-in-container")
    monkeypatch.setattr(bench, "read_run_facts", lambda *_: None)
    monkeypatch.setattr(bench.HardwareMeta, "of", staticmethod(lambda hw: None))
    monkeypatch.setattr(bench, "start_run", start_run)
    request = bench.BenchRequest(project="p", workload="visionarena", batch="1,4",
                                 mode="concurrency", dataset_path="/data/va")
    with pytest.raises(Started):
        bench.run_bench(request, Path("results"), ROOT, None, None)  # type: ignore[arg-type]
    assert located == ["/data/va"]
    assert started == [("/tmp/va-in-container", "sample-abc", "concurrency", 2)]


def test_a_container_removed_while_listing_is_skipped_not_a_traceback() -> None:
    """`invoke status` beside another `down`: the SDK lists ids, then inspects each, and one
    removed in between raised NotFound (seen with the suite's two workers)."""
    from docker.models.containers import ContainerCollection

    import docker
    from glmkit.run import engine

    class Api:
        def containers(self, **_: Any) -> list[dict[str, str]]:
            return [{"Id": "kept"}, {"Id": "gone"}]

        def inspect_container(self, ident: str) -> dict[str, Any]:
            if ident == "gone":
                raise docker.errors.NotFound("No such container: gone")
            return {"Id": ident, "Config": {"Labels": {}}}

    class Client:
        api = Api()

        @property
        def containers(self) -> ContainerCollection:
            return ContainerCollection(client=self)

    client: Any = Client()
    assert [c.id for c in engine.managed_containers(client)] == ["kept"]
    assert [c.id for c in engine.project_containers(client, "p")] == ["kept"]
