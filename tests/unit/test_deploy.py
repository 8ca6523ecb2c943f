"""The sequences behind the tasks: exports that do not copy this host, settings every
task resolves alike, a cluster that never stays half started, and runs without git."""

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

from .test_cli import ROOT, invoke


def _completed_download(cache: Path, model: str) -> None:
    snapshot = cache / "hub" / f"models--{model.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (cache / "glmkit-complete").mkdir()
    (cache / "glmkit-complete" / f"{model.replace('/', '--')}.json").write_text(
        json.dumps({"path": str(snapshot)}))


def test_k8s_export_does_not_copy_this_hosts_state(tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    _completed_download(cache, "zai-org/GLM-4.6-FP8")
    owned = tmp_path / "hf-user"  # a normal user's cache: `up` would add DAC_OVERRIDE
    owned.mkdir()
    os.chown(owned, 1000, 1000)
    project = "k8s-portable"
    for hf_home in (cache, owned):
        done = invoke("export", "k8s", "--vendor", "rocm", "--model", "zai-org/GLM-4.6-FP8",
                      "--gpu", "mi300x", "--gpus", "4,5,6,7", "--tp", "4", "--project", project,
                      env={"HF_HOME": str(hf_home)})
        assert done.returncode == 0, done.stderr
        text = (ROOT / "compose" / f"{project}.k8s.yaml").read_text()
        for host_state in ("HF_HUB_OFFLINE", "HIP_VISIBLE_DEVICES", "DAC_OVERRIDE"):
            assert host_state not in text, (hf_home, host_state)
        pod = list(yaml.safe_load_all(text))[1]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["amd.com/gpu"] == 4
    (ROOT / "compose" / f"{project}.k8s.yaml").unlink()


def test_k8s_export_without_the_schemas_says_so(tmp_path: Path) -> None:
    # A normal install has no kubernetes-validate: a note, not a traceback.
    blocker = tmp_path / "kubernetes_validate.py"
    blocker.write_text("raise ImportError('not installed')\n")
    done = invoke("export", "k8s", "--vendor", "cuda", "--model", "zai-org/GLM-4.6-FP8",
                  "--gpu", "h200", "--project", "k8s-novalidate",
                  env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "not validated" in done.stdout and "glmkit[k8s]" in done.stdout
    (ROOT / "compose" / "k8s-novalidate.k8s.yaml").unlink()


def test_every_task_reads_the_project_from_config_and_environment(tmp_path: Path) -> None:
    # A project that exists nowhere: each task must look for it, not for "glmkit".
    env = {"GLMKIT_PROJECT": "from-env-7b3"}
    for task in (["status", "--json"], ["down"], ["bench", "--batch", "1"]):
        done = invoke(*task, env=env)
        text = done.stdout + done.stderr
        assert "Traceback" not in text
        if task[0] == "down":
            assert "from-env-7b3: nothing was running" in done.stdout
        if task[0] == "bench":
            assert "'from-env-7b3'" in done.stderr
    config = tmp_path / "invoke.yaml"
    config.write_text("glmkit:\n  project: from-yaml-7b3\n")
    done = invoke("-f", str(config), "down")
    assert "from-yaml-7b3: nothing was running" in done.stdout, done.stderr


def test_a_boolean_set_in_config_can_be_unset_on_the_command_line() -> None:
    on = invoke("config", env={"GLMKIT_ENFORCE_EAGER": "1"})
    row = next(line for line in on.stdout.splitlines() if "enforce_eager" in line)
    assert "True" in row and "environment" in row
    off = invoke("config", "--no-enforce-eager", env={"GLMKIT_ENFORCE_EAGER": "1"})
    row = next(line for line in off.stdout.splitlines() if "enforce_eager" in line)
    assert "False" in row and "flag" in row
    both = invoke("config", "--enforce-eager", "--no-enforce-eager")
    assert both.returncode == 2 and "contradict" in both.stderr


def test_extra_args_from_the_environment_are_shell_words() -> None:
    from glmkit.host.settings import resolve_settings

    settings, _ = resolve_settings({}, {}, {
        "GLMKIT_EXTRA_ARGS": '--override-generation-config \'{"temperature": 0.6}\''})
    assert settings.extra_args == ("--override-generation-config", '{"temperature": 0.6}')


def test_bench_metadata_without_git_on_path(tmp_path: Path) -> None:
    code = ("import sys; sys.path.insert(0, 'src'); from pathlib import Path; "
            "from glmkit.measure.point import _git_commit; print(repr(_git_commit(Path('.'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "PATH": str(tmp_path)},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_a_cluster_that_fails_to_start_stops_every_started_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from glmkit.plan.cluster import build_cluster, parse_nodes
    from glmkit.run import cluster_runtime

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

    monkeypatch.setattr(cluster_runtime, "run", fake_run)
    monkeypatch.setattr(cluster_runtime, "refuse_broken", lambda cluster: None)
    with pytest.raises(CommandFailed):
        cluster_runtime.start(cluster, [Path("head.yaml"), Path("w1.yaml")], {}, Console())
    assert calls == [("ssh://gpu1", "up"), ("ssh://gpu2", "up"),
                     ("ssh://gpu1", "down"), ("ssh://gpu2", "down")]


def test_node_states_do_not_depend_on_composes_output_format(
        monkeypatch: pytest.MonkeyPatch, compose_cli: None) -> None:
    """Compose before 2.21 prints `ps --format json` as one array, later as JSON lines:
    node states come from the engine itself, so both read the same."""
    from glmkit import process
    from glmkit.plan.cluster import build_cluster, parse_nodes
    from glmkit.run import cluster_runtime

    from .helpers import plan_for

    project = "glmkit-ps-format"
    base = plan_for(vendor="cpu", project=project, nodes="2")
    cluster = build_cluster(base, parse_nodes("2"), "mp", tp=None, pp=None, gpus_per_node=1)
    real_run = process.run

    def old_compose(argv: list[str], **kwargs: Any) -> Any:
        done = real_run(argv, **kwargs)
        if argv[:2] == ["docker", "compose"] and "ps" in argv:  # the pre-2.21 array
            items = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
            done = subprocess.CompletedProcess(argv, 0, json.dumps(items), done.stderr)
        return done

    for module in (process, cluster_runtime):
        monkeypatch.setattr(module, "run", old_compose, raising=False)
    image = "debian:bookworm-slim"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip(f"{image} is not on this engine (scripts/setup.sh makes it)")
    try:
        for node in ("head", "worker1"):
            subprocess.run(["docker", "run", "-d", "--name", f"{project}-{node}-1",
                            "--label", f"com.docker.compose.project={project}",
                            "--label", f"com.docker.compose.service={node}", image,
                            "sleep", "60"], check=True, capture_output=True)
        states = cluster_runtime.node_states(cluster)
        assert [(s.node, s.state) for s in states] == [("head", "running"),
                                                       ("worker1", "running")]
    finally:
        for node in ("head", "worker1"):
            subprocess.run(["docker", "rm", "-f", f"{project}-{node}-1"], capture_output=True,
                           check=False)


def test_plain_names_reach_bench_before_any_server_lookup() -> None:
    from glmkit.measure.bench import BenchRequest, run_bench

    with pytest.raises(UsageError, match="plain name"):
        run_bench(BenchRequest(project="none", label="a/../../b"), Path("results"), ROOT,
                  None, None)  # type: ignore[arg-type]
