"""Issue #35, the trust boundary's third round, the policy's part: code-loading as a
combination (High 1), remote engines (High 2), mounts by ownership (Medium 7) and the
settings' Lows. Each input goes through the real CLI (invoke's Program in this process, as
tests/unit/test_cli_trust.py runs it) or the library entry point the issue names. Every
test of a defect failed on main at dedf86a; the few that hold what stays allowed (a pinned
commit, the command line's choice, TLS-verified tcp://, /var/tmp, GPU names that mapped
right, one's own --speculative-config without --mtp) passed there too and guard against
refusing too much."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.helpers import NO_GPU
from tests.unit.test_cli_trust import one_line_error, run_task

GLM_H200 = ("--vendor", "cuda", "--gpu", "h200", "--model", "zai-org/GLM-4.7-FP8")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            tmp_path: Path, *argv: str, env: dict[str, str] | None = None
            ) -> tuple[int, str, str]:
    """run_task with the process's argv as a shell would give it, so the words after `--`
    keep their boundaries (a JSON value with spaces stays one word)."""
    import sys

    monkeypatch.setattr(sys, "argv", ["invoke", *argv])
    return run_task(monkeypatch, capsys, tmp_path, *argv, env=env)


def compose_text(tmp_path: Path, name: str = "glmkit.yaml") -> str:
    path = tmp_path / "compose" / name
    return path.read_text() if path.exists() else ""


def with_config(tmp_path: Path, text: str) -> tuple[str, str]:
    config = tmp_path / "invoke.yaml"
    config.write_text(text)
    return "-f", str(config)


def yaml_args(tmp_path: Path, *words: str) -> tuple[str, str]:
    import json

    return with_config(tmp_path, f"glmkit:\n  extra_args: {json.dumps(list(words))}\n")


# --- High 1: code-loading is a combination ----------------------------------------------

def test_the_issues_reproduction_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    config = yaml_args(tmp_path, "--code-revision", "refs/pr/1", "--hf-config-path",
                       "attacker/cfg")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200)
    one_line_error(code, err, "--code-revision 'refs/pr/1' from the invoke.yaml")
    assert not compose_text(tmp_path)


SELECTORS = [
    ["--tokenizer", "attacker/tok"],
    ["--hf-config-path", "attacker/cfg"],
    ["--generation-config", "attacker/gen"],
    ["--spec-model", "attacker/draft"],
    ["--speculative-config", '{"method": "eagle", "model": "attacker/draft", '
     '"num_speculative_tokens": 1}'],
    ["--speculative-config.model", "attacker/draft"],
    ["--hf-overrides", '{"auto_map": {"AutoConfig": "attacker/x--m.C"}}'],
    ["--hf-overrides.auto_map.AutoConfig", "attacker/x--m.C"],
    ["--revision", "main"],
    ["--code-revision", "refs/pr/1"],
    ["--tokenizer-revision", "v1.0"],
    ["--revision", COMMIT[:12]],
    ["--speculative-config.revision", "main"],
]


@pytest.mark.parametrize("words", SELECTORS, ids=lambda w: w[0])
@pytest.mark.parametrize("source", ["invoke.yaml", "environment"])
def test_what_chooses_the_trusted_code_needs_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        words: list[str], source: str) -> None:
    import shlex

    if source == "invoke.yaml":
        argv: tuple[str, ...] = (*yaml_args(tmp_path, *words), "render", "--no-check",
                                 *GLM_H200)
        env = {}
    else:
        argv, env = ("render", "--no-check", *GLM_H200), {
            "GLMKIT_EXTRA_ARGS": shlex.join(words)}
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv, env=env)
    one_line_error(code, err, "--trust-remote-code")
    assert not compose_text(tmp_path)


@pytest.mark.parametrize("words", [
    ["--revision", COMMIT], ["--code-revision", COMMIT], ["--tokenizer-revision", COMMIT],
    ["--generation-config", "vllm"], ["--no-trust-remote-code", "--tokenizer", "org/tok"]])
def test_a_pinned_commit_and_what_loads_no_code_pass_from_invoke_yaml(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        words: list[str]) -> None:
    config = yaml_args(tmp_path, *words)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200)
    assert code == 0, err
    assert words[-1] in compose_text(tmp_path)


@pytest.mark.parametrize("words", SELECTORS[:3])
def test_the_command_line_may_choose(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     words: list[str]) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            "--", *words)
    assert code == 0, err
    assert words[-1] in compose_text(tmp_path)


def test_without_remote_code_invoke_yaml_may_name_a_tokenizer(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    # A model whose command holds no --trust-remote-code: nothing of the repository runs.
    config = yaml_args(tmp_path, "--tokenizer", "org/tok", "--revision", "main")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            "--vendor", "cpu", "--model", "Qwen/Qwen3-0.6B")
    assert code == 0, err


def test_export_k8s_refuses_it_too(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = yaml_args(tmp_path, "--hf-config-path", "attacker/cfg")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "export", "k8s", *GLM_H200)
    one_line_error(code, err, "--hf-config-path from the invoke.yaml")
    assert not list((tmp_path / "compose").glob("*.k8s.yaml"))


@pytest.mark.parametrize("layout", [("--nodes", "2"), ("--strategy", "pd_cluster")])
def test_clusters_and_pools_refuse_it_too(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          layout: tuple[str, str]) -> None:
    config = yaml_args(tmp_path, "--tokenizer", "attacker/tok")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200, "--gpu-count", "8", *layout)
    one_line_error(code, err, "--tokenizer from the invoke.yaml")


def test_a_pool_block_with_remote_code_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool block of the recipe adds flags the one server lacks: its
    --trust-remote-code combines with invoke.yaml's tokenizer as well."""
    from glmkit.errors import UsageError
    from glmkit.host.facts import read_host_facts
    from glmkit.host.settings import Settings
    from glmkit.knowledge.recipes import load_book
    from glmkit.plan.pd import plan_pd
    from tests.unit.test_pd import ENV

    book = load_book(ENV)
    strategy = book.strategies["pd_cluster"]
    decode = strategy.decode
    monkeypatch.setitem(book.strategies, "pd_cluster", strategy.model_copy(update={
        "decode": decode.model_copy(update={"vllm_args": [*(decode.vllm_args or ()),
                                                          "--trust-remote-code"]})}))
    for source, refused in (("invoke.yaml", True), ("flag", False)):
        s = Settings(strategy="pd_cluster", project="pdt", vendor="cpu",
                     extra_args=("--tokenizer", "x/tok"), extra_args_source=source)
        if refused:
            with pytest.raises(UsageError, match="--tokenizer from the invoke.yaml"):
                plan_pd(s, read_host_facts(s, ENV, NO_GPU), book)
        else:
            plan = plan_pd(s, read_host_facts(s, ENV, NO_GPU), book)
            assert "--trust-remote-code" in plan.pool("decode")[0].args


# --- High 2: remote engines ---------------------------------------------------------------

TCP_NODES = "head=tcp://203.0.113.5:2375,w1=tcp://203.0.113.6:2375"


def tls_folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "certs"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return folder


def test_the_issues_tcp_reproduction_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    config = with_config(tmp_path, f"glmkit:\n  nodes: {TCP_NODES}\n")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200)
    one_line_error(code, err, "is plain TCP (DOCKER_TLS_VERIFY is not set)")
    assert not list((tmp_path / "compose").glob("*.yaml"))


@pytest.mark.parametrize("engine", ["http://203.0.113.6:2375", "https://203.0.113.6:2376",
                                    # urlsplit lowercases the scheme; the TLS check and
                                    # the Docker SDK did not (independent review, #35)
                                    "TCP://203.0.113.6:2375", "Tcp://203.0.113.6:2375",
                                    "unix:///var/run/docker.sock", "npipe://x", "fd://3"])
@pytest.mark.parametrize("source", ["invoke.yaml", "environment", "command line"])
def test_only_ssh_and_tls_tcp_engines(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      engine: str, source: str) -> None:
    nodes = f"head=ssh://gpu1,w1={engine}"
    argv: tuple[str, ...] = ("render", "--no-check", *GLM_H200)
    env: dict[str, str] = {}
    if source == "invoke.yaml":
        argv = (*with_config(tmp_path, f"glmkit:\n  nodes: {nodes}\n"), *argv)
    elif source == "environment":
        env = {"GLMKIT_NODES": nodes}
    else:
        argv = (*argv, "--nodes", nodes)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv, env=env)
    one_line_error(code, err, "is not ssh:// or tcp://")


@pytest.mark.parametrize("files", [(), ("ca.pem",), ("cert.pem", "key.pem")])
def test_tcp_without_every_tls_file_is_refused(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, files: tuple[str, ...]) -> None:
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tls_folder(tmp_path, *files))}
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            "--nodes", TCP_NODES, env=env)
    one_line_error(code, err, "missing in DOCKER_CERT_PATH")


def test_tcp_with_tls_verified_renders(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    env = {"DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(tls_folder(tmp_path, "ca.pem", "cert.pem", "key.pem"))}
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            "--nodes", TCP_NODES, env=env)
    assert code == 0, err
    assert (tmp_path / "compose" / "glmkit-w1.yaml").exists()


def test_the_engine_client_and_compose_refuse_plain_tcp(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """Where the secrets leave (`docker compose` with them in its environment) and where
    the SDK connects, plain TCP is refused again, whatever built the plan."""
    from glmkit.errors import UsageError
    from glmkit.run import engine

    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tls_folder(tmp_path)))
    made: list[Any] = []
    monkeypatch.setattr(engine, "DockerClient", lambda *a, **k: made.append(k))
    for call in (lambda: engine.client("tcp://203.0.113.6:2375"),
                 lambda: engine.compose_env("tcp://203.0.113.6:2375", {"HF_TOKEN": "x"})):
        with pytest.raises(UsageError, match="plain TCP"):
            call()
    assert not made


def test_a_tls_engine_client_verifies_with_the_users_certificates(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from glmkit.run import engine

    folder = tls_folder(tmp_path, "ca.pem", "cert.pem", "key.pem")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(folder))
    made: list[dict[str, Any]] = []

    class Fake:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        def ping(self) -> None:
            pass

    monkeypatch.setattr(engine, "DockerClient", Fake)
    engine.client("tcp://203.0.113.6:2376")
    tls = made[0]["tls"]
    assert made[0]["base_url"] == "tcp://203.0.113.6:2376"
    assert tls.verify is True and tls.ca_cert == str(folder / "ca.pem")
    assert tls.cert == (str(folder / "cert.pem"), str(folder / "key.pem"))


def test_up_names_the_engines_before_any_secret_leaves(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from glmkit.host.facts import read_host_facts
    from glmkit.host.settings import Settings
    from glmkit.knowledge.recipes import load_book
    from glmkit.plan.cluster import plan_cluster
    from glmkit.run import deploy, lifecycle

    env = {"GLMKIT_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    s = Settings(vendor="cuda", gpu="h200", gpu_count=8, model="zai-org/GLM-4.7-FP8",
                 engine="ray", nodes="head=ssh://ops@gpu1,w1=ssh://gpu2:2222")
    cluster = plan_cluster(s, read_host_facts(s, env, NO_GPU), load_book(env))
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None)
    seen: list[str] = []
    monkeypatch.setattr(deploy, "render", lambda *a, **k: [tmp_path / "a.yaml"] * 2)
    monkeypatch.setattr(lifecycle, "start", lambda *a, **k: seen.append(out.getvalue()) or 1.0)
    secrets = {"HF_TOKEN": "hf_SECRETVALUE_1234", "VLLM_API_KEY": "sk-SECRET-KEY"}
    deploy._up(cluster, secrets, tmp_path, tmp_path, console, env, smoke=False)
    line = next(x for x in seen[0].splitlines() if x.startswith("Sending"))
    assert line == ("Sending HF_TOKEN, RAY_AUTH_TOKEN, VLLM_API_KEY to 2 Docker engine(s): "
                    "ssh://ops@gpu1, ssh://gpu2:2222")
    assert "SECRET" not in seen[0]


def test_a_plain_local_up_says_nothing_of_engines() -> None:
    from glmkit.run.deploy import secret_recipients
    from tests.unit.helpers import plan_for

    plan = plan_for(vendor="cpu")
    assert secret_recipients(plan, {"HF_TOKEN": "x"}, {}) is None
    assert secret_recipients(plan, {"HF_TOKEN": "x"}, {"DOCKER_HOST": "unix:///x"}) is None
    assert secret_recipients(plan, {"HF_TOKEN": "x"}, {"DOCKER_HOST": "ssh://ops@box"}) == \
        "Sending HF_TOKEN to 1 Docker engine(s): ssh://ops@box"


# --- Low: --nodes names ---------------------------------------------------------------------

@pytest.mark.parametrize("nodes", [
    "head=ssh://gpu.localhost,w1=ssh://gpu2", "head=ssh://gpu1,w1=GPU.LOCALHOST.",
    "head=ssh://ip6-localhost,w1=ssh://gpu2", "head=ssh://localhost.,w1=ssh://gpu2"])
def test_names_that_are_loopback_are_refused(nodes: str) -> None:
    from glmkit.errors import UsageError
    from glmkit.host.nodes import parse_nodes_setting

    with pytest.raises(UsageError, match="is not an address other nodes can reach"):
        parse_nodes_setting(nodes)


@pytest.mark.parametrize("nodes", [
    "head=ssh://gpu1,w1=ssh://gpu1", "head=ssh://a@gpu1,w1=ssh://b@GPU1.:2222",
    "head=ssh://10.0.0.1,w1=tcp://10.1:2376", "head=gpu1,w1=gpu2,w2=ssh://gpu2"])
def test_the_same_machine_twice_is_refused(nodes: str) -> None:
    from glmkit.errors import UsageError
    from glmkit.host.nodes import parse_nodes_setting

    with pytest.raises(UsageError, match="are the same machine"):
        parse_nodes_setting(nodes)


@pytest.mark.parametrize("engine", ["ssh://u:secret@gpu1", "tcp://u:secret@gpu1:2376",
                                    "tcp://u@gpu1:2376", "u:secret@gpu1",
                                    "ssh://u:sec:ret@gpu1"])
def test_a_password_in_a_node_is_refused_and_never_shown(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        engine: str) -> None:
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "config", "--nodes",
                              f"head={engine},w1=ssh://gpu2")
    one_line_error(code, err, "reach it with an SSH key")
    assert "secret" not in out + err and "ret@" not in out + err


def test_a_bracket_in_a_node_is_one_line() -> None:
    from glmkit.errors import UsageError
    from glmkit.host.nodes import parse_nodes_setting

    for nodes in ("head=ssh://[gpu1,w1=gpu2", "head=ssh://gpu1],w1=gpu2"):
        with pytest.raises(UsageError, match="cannot read a host name"):
            parse_nodes_setting(nodes)


@pytest.mark.parametrize("nodes", ["Head=ssh://u:secret@gpu1,w1=ssh://gpu2",
                                   "head=ssh://u:secret@gpu1/\x1b,w1=ssh://gpu2",
                                   "head=ssh://u:secret@gpu1:99999,w1=ssh://gpu2"])
def test_no_message_about_a_node_shows_its_password(nodes: str) -> None:
    from glmkit.errors import UsageError
    from glmkit.host.nodes import parse_nodes_setting

    with pytest.raises(UsageError) as err:
        parse_nodes_setting(nodes)
    assert "secret" not in str(err.value)


# --- Medium 7: mounts by ownership ---------------------------------------------------------

OTHER_UID = 12345
VISION = ("--vendor", "cuda", "--gpu", "h200", "--model", "zai-org/GLM-4.6V")


def others_folder(tmp_path: Path, name: str = "alice-data") -> Path:
    """Another user's 0700 folder outside /home (the test runs as root, so it can chown)."""
    import os

    folder = tmp_path / name
    folder.mkdir(mode=0o700)
    os.chown(folder, OTHER_UID, OTHER_UID)
    return folder


def _mount_argv(tmp_path: Path, where: str, option: str, folder: str
                ) -> tuple[tuple[str, ...], dict[str, str]]:
    """render's argv and environment naming `folder` as `option` from `where`."""
    base = ("render", "--no-check", *(VISION if option == "media_dir" else GLM_H200))
    if where == "invoke.yaml":
        return (*with_config(tmp_path, f"glmkit:\n  {option}: {folder}\n"), *base), {}
    if where == "environment":
        name = "HF_HOME" if option == "hf_cache" else f"GLMKIT_{option.upper()}"
        return base, {name: folder}
    return (*base, f"--{option.replace('_', '-')}", folder), {}


needs_root = pytest.mark.skipif(__import__("os").geteuid() != 0,
                                reason="needs root to chown a folder to another user")


@needs_root
@pytest.mark.parametrize("where", ["invoke.yaml", "environment", "command line"])
@pytest.mark.parametrize("option", ["hf_cache", "media_dir"])
def test_another_users_folder_outside_home_is_not_mounted(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        where: str, option: str) -> None:
    folder = others_folder(tmp_path)
    argv, env = _mount_argv(tmp_path, where, option, str(folder))
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv, env=env)
    one_line_error(code, err, f"belongs to uid {OTHER_UID}, not to you (uid 0)")
    assert not compose_text(tmp_path)


@needs_root
def test_a_missing_folder_inside_another_users_is_not_mounted(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    folder = others_folder(tmp_path) / "cache"
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            env={"HF_HOME": str(folder)})
    one_line_error(code, err, f"belongs to uid {OTHER_UID}")


@pytest.mark.parametrize("folder", ["/var/lib/dpkg", "/var/backups", "/opt", "/srv",
                                    "/var/lib/glmkit-missing"])
@pytest.mark.parametrize("where", ["invoke.yaml", "environment"])
@pytest.mark.parametrize("option", ["hf_cache", "media_dir"])
def test_system_folders_from_invoke_yaml_or_the_environment_are_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        folder: str, where: str, option: str) -> None:
    # Run as root here: root owns them, and that proves nothing.
    argv, env = _mount_argv(tmp_path, where, option, folder)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv, env=env)
    one_line_error(code, err, "where the system keeps its state; give it on the command line")
    assert not compose_text(tmp_path)


@needs_root
def test_a_system_folder_from_the_command_line_comes_with_a_note(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                              "--hf-cache", "/srv")
    assert code == 0, err
    assert "--hf-cache /srv is under /srv, where the system keeps its state" in out + err
    assert "source: /srv\n      target: /root/.cache/huggingface" in compose_text(tmp_path)


def test_var_tmp_is_not_a_system_folder(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            env={"HF_HOME": "/var/tmp/glmkit-test-hf-missing"})
    assert code == 0, err


@needs_root
def test_a_normal_user_mounts_their_own_folders_only(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """Invoked as uid 12345: its own folder, a folder it will make in its own or in a
    sticky scratch folder, pass; root's folder and one it would make in root's do not."""
    import os

    from glmkit.errors import UsageError
    from glmkit.policy import Source, admit_host_folder

    mine = others_folder(tmp_path, "mine")
    roots = tmp_path / "roots"
    roots.mkdir()
    home = tmp_path / "home"
    monkeypatch.setattr(os, "getuid", lambda: OTHER_UID)
    for ok in (mine, mine / "new", Path("/tmp") / "glmkit-test-not-made" / "x"):
        assert admit_host_folder(ok, "--hf-cache", home, source=Source.ENVIRONMENT).path == ok
    for bad in (roots, roots / "new"):
        with pytest.raises(UsageError, match="belongs to uid 0, not to you"):
            admit_host_folder(bad, "--hf-cache", home, source=Source.COMMAND_LINE)


def test_a_normal_users_home_under_var_is_theirs(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A service account's home under /var/lib is not a system folder to that user; for
    root nothing under a system prefix is, from invoke.yaml or the environment."""
    from glmkit.errors import UsageError
    from glmkit.policy import Source, admit_host_folder

    monkeypatch.setattr("glmkit.policy._owned", lambda path, uid: (True, uid))
    home = Path("/var/lib/jenkins")
    cache = home / ".cache" / "huggingface"
    assert admit_host_folder(cache, "The HF cache (HF_HOME)", home, source=Source.KIT,
                             uid=110).path == cache
    with pytest.raises(UsageError, match="under /var"):
        admit_host_folder(cache, "The HF cache (HF_HOME)", home, source=Source.KIT, uid=0)


@needs_root
def test_dac_override_only_for_the_invoking_users_cache(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    import os

    cache = others_folder(tmp_path, "hf")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            env={"HF_HOME": str(cache)})
    one_line_error(code, err, "not to you")  # before: mounted, with DAC_OVERRIDE added
    monkeypatch.setattr(os, "getuid", lambda: OTHER_UID)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            env={"HF_HOME": str(cache)})
    assert code == 0, err
    assert "DAC_OVERRIDE" in compose_text(tmp_path)


# --- Low: path options longer than a file-name component ------------------------------------

LONG = "/tmp/" + "a" * 300


@pytest.mark.parametrize(("argv", "env", "what"), [
    (("--hf-cache", LONG), {}, "--hf-cache"),
    (("--hf-cache", "/tmp/" + "a/" * 2100), {}, "--hf-cache"),
    (("--media-dir", LONG, *VISION), {}, "--media-dir"),
    ((), {"HF_HOME": LONG}, "The HF cache (HF_HOME)"),
    ((), {"GLMKIT_MEDIA_DIR": LONG, "GLMKIT_MODEL": "zai-org/GLM-4.6V"}, "--media-dir")])
def test_a_path_too_long_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     argv: tuple[str, ...], env: dict[str, str],
                                     what: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *argv,
                            env=env)
    one_line_error(code, err, f"{what} '/tmp/a")
    assert "is too long for a path" in err and len(err) < 300


def test_admit_path_is_the_one_shape_check() -> None:
    from glmkit.errors import UsageError
    from glmkit.policy import admit_path

    assert admit_path("~/x/" + "b" * 255, "--out") == Path("~/x/" + "b" * 255)
    for bad in ("", " ", "a\nb", "a\0b", "c" * 256, "/d" * 2048, "\udcff"):
        with pytest.raises(UsageError, match="--out") as err:
            admit_path(bad, "--out")
        assert len(str(err.value)) < 200


# --- Low: numbers in ASCII digits, and values echoed short ----------------------------------

WALL = "9x" * 2500  # 5,000 characters


@pytest.mark.parametrize(("argv", "env", "config"), [
    (("--port", "٨٠٠٠"), {}, ""), (("--port", "８０００"), {}, ""), (("--port", "8_000"), {}, ""),
    ((), {"GLMKIT_PORT": "٨٠٠٠"}, ""), ((), {}, "port: '٨٠٠٠'"),
    (("--dp", "٢"), {}, ""), (("--gpu-memory-utilization", "٠.٥"), {}, ""),
    (("--gpus", "٠,١"), {}, "")])
def test_numbers_are_ascii_digits(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  argv: tuple[str, ...], env: dict[str, str],
                                  config: str) -> None:
    where = with_config(tmp_path, f"glmkit:\n  {config}\n") if config else ()
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *where, "render", "--no-check",
                            *GLM_H200, *argv, env=env)
    one_line_error(code, err, "expected a" if "--gpus" not in argv else "GPU indexes")
    assert not compose_text(tmp_path)


@pytest.mark.parametrize(("argv", "env", "config"), [
    (("--port", WALL), {}, ""), (("--dp", WALL), {}, ""), (("--tp", WALL), {}, ""),
    (("--gpu-memory-utilization", WALL), {}, ""), (("--max-model-len", "9" * 5000), {}, ""),
    ((), {"GLMKIT_PORT": WALL}, ""), ((), {"GLMKIT_MAX_MODEL_LEN": WALL}, ""),
    ((), {}, f"port: '{WALL}'"), ((), {}, f"dp: '{WALL}'"), ((), {}, f"mtp: '{WALL}'"),
    (("--gpus", WALL), {}, ""), (("--gpus", "1," * 2500), {}, ""), (("--host", WALL), {}, "")])
def test_a_bad_value_is_echoed_short(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     argv: tuple[str, ...], env: dict[str, str],
                                     config: str) -> None:
    where = with_config(tmp_path, f"glmkit:\n  {config}\n") if config else ()
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *where, "render", "--no-check",
                            *GLM_H200, *argv, env=env)
    assert code == 2, err
    assert "Traceback" not in err and len(err) < 300, err[:400]


# --- Low: bidi and format characters; the GPU name pattern ---------------------------------

@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200b", "\u2069", "\ufeff",
                                  "\u2028", "\U000e0041"])
def test_format_characters_are_shown_as_question_marks(
        char: str, capsys: pytest.CaptureFixture[str]) -> None:
    from glmkit.cli.views import console, print_notes, say
    from glmkit.text import printable

    assert printable(f"model{char}gnp.exe") == "model?gnp.exe"
    print_notes(console(), [f"note {char}x"])
    say(f"project {char}x")
    shown = capsys.readouterr().out
    assert char not in shown and "note ?x" in shown and "project ?x" in shown


@pytest.mark.parametrize("name", ["\x1b", "H100\x1b", "a\x9bb", "\u202eH100", "H100\u200b",
                                  " \x07 "])
def test_a_gpu_name_with_one_control_character_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        name: str) -> None:
    import json

    path = tmp_path / "hw.json"
    path.write_text(json.dumps({"vendor": "cuda", "gpus": [
        {"index": 0, "name": name, "memory_mib": 81559}]}))
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--model",
                            "zai-org/GLM-4.6", env={"GLMKIT_HARDWARE": str(path)})
    one_line_error(code, err, "GLMKIT_HARDWARE")


# --- Low: flags a deployment owns are refused, never overridden without a word -------------

@pytest.mark.parametrize(("argv", "extra", "message"), [
    (("--nodes", "2"), ("--distributed-executor-backend", "ray"),
     "A multi-node cluster sets --distributed-executor-backend itself"),
    (("--gpu-count", "8", "--strategy", "pd_cluster"), ("--pipeline-parallel-size", "2"),
     "--strategy pd_cluster sets --pipeline-parallel-size itself"),
    (("--gpu-count", "8", "--strategy", "pd_cluster"), ("-pp", "2"),
     "--strategy pd_cluster sets --pipeline-parallel-size itself"),
    (("--mtp",), ("--speculative-config", '{"method": "mtp", "num_speculative_tokens": 3}'),
     "--mtp sets --speculative-config itself"),
    (("--mtp",), ("--speculative-config.num_speculative_tokens", "3"),
     "--mtp sets --speculative-config itself")])
def test_flags_the_deployment_sets_are_refused(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, argv: tuple[str, ...],
                                               extra: tuple[str, ...], message: str) -> None:
    code, _, err = run_cli(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                           *argv, "--", *extra)
    one_line_error(code, err, message)
    assert not list(tmp_path.glob("compose/*.yaml"))


def test_without_mtp_a_speculative_config_of_ones_own_is_used(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    code, _, err = run_cli(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                           "--", "--speculative-config",
                           '{"method": "mtp", "num_speculative_tokens": 3}')
    assert code == 0, err
    text = compose_text(tmp_path)
    assert "num_speculative_tokens" in text and "--speculative-config.method" not in text


# --- Low: plan's hardware and numbers -------------------------------------------------------

def test_gh200_is_not_planned_as_an_h200(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--gpu", "gh200",
                            "--model", "zai-org/GLM-4.7-FP8")
    one_line_error(code, err, "Unknown GPU 'gh200'")


@pytest.mark.parametrize(("name", "tid"), [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("NVIDIA GH200 480GB", None),
    ("NVIDIA H800", "h100"), ("NVIDIA B200", "b200"), ("NVIDIA GB200", "gb200"),
    ("AMD Instinct MI300X", "mi300x"), ("AMD Instinct MI355X", "mi355x"),
    ("NVIDIA H100-SXM5-80GB", "h100")])
def test_detected_names_map_by_word(name: str, tid: str | None) -> None:
    from glmkit.knowledge.resolver import taxonomy_id

    assert taxonomy_id(name) == tid


def test_plan_gives_pp_no_deeper_than_the_layers(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--gpu", "h200",
                            "--nodes", "200", "--model", "zai-org/GLM-4.7-FP8")
    one_line_error(code, err, "has 92; plan for at most 92 nodes")
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--gpu", "h200",
                              "--nodes", "4", "--model", "zai-org/GLM-4.7-FP8")
    assert code == 0 and "PP 4" in out, err


def test_a_huge_gpu_count_prints_plain_numbers(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--gpu", "h200",
                              "--gpu-count", "1048576", "--model", "zai-org/GLM-4.7-FP8")
    assert code == 0, err
    assert "e+0" not in out and "147,849,216 GB" in out


@pytest.mark.parametrize("tokens", ["17", "1048576"])
def test_mtp_tokens_past_any_use_are_refused(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, tokens: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            "--mtp", "--mtp-tokens", tokens)
    one_line_error(code, err, "--mtp-tokens must be a whole number from 1 to 16")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            "--mtp", "--mtp-tokens", "5")
    assert code == 0, err


@pytest.mark.parametrize("words", [WALL, "--" + WALL, f"-{WALL}",
                                   f"--speculative-config.{WALL} '{{x'",
                                   f"--compilation-config.{WALL}.backend evil.mod"])
def test_a_bad_vllm_argument_is_echoed_short(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, words: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            env={"GLMKIT_EXTRA_ARGS": words})
    assert code == 2 and "Traceback" not in err and len(err) < 300, err[:400]
