"""Errors as the user meets them: each kind its own exit code, a failed command named in
full with its secrets masked, and a failed tool-call check at `up` exiting as a check."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from glmkit import errors, process
from glmkit.errors import CheckFailed, CommandFailed, EnvironmentProblem, mask_argv

from .test_cli_trust import run_task

KEY, TOKEN = "sk-topsecret9", "hf_secrettoken42"


def test_every_error_kind_has_its_own_exit_code() -> None:
    codes = {cls.__name__: cls.exit_code for cls in errors.GlmkitError.__subclasses__()}
    assert codes == {"UsageError": 2, "EnvironmentProblem": 3, "CommandFailed": 4,
                     "ServerFailed": 5, "BenchFailed": 6, "Interrupted": 130,
                     "CheckFailed": 7, "AccuracyFailed": 8}
    assert errors.GlmkitError.exit_code == 1


def test_the_readme_lists_every_exit_code() -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.partition("## Exit codes")[2].partition("\n## ")[0]
    rows = dict(re.findall(r"^\| (\d+) +\| `(\w+)`", table, re.M))
    classes = [errors.GlmkitError, *errors.GlmkitError.__subclasses__()]
    assert rows == {str(cls.exit_code): cls.__name__ for cls in classes}
    assert re.search(r"^\| 0 ", table, re.M)


def test_a_failed_command_is_named_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    argv = ["docker", "compose", "-p", "glm", "-f", "/tmp/my dir/glm.yaml", "up", "-d",
            "--wait"]
    err = CommandFailed(argv, 1, "", "first\nno such service: vllm\n")
    assert str(err) == (f"`{shlex.join(argv)}` failed with exit code 1: "
                        "no such service: vllm")
    assert "'/tmp/my dir/glm.yaml'" in str(err)  # quoted as a shell reads it
    assert "(no output)" in str(CommandFailed(["true"], 3, "", ""))
    assert str(CommandFailed(["x"], 1, "", "", hint="Do this.")).endswith("\nDo this.")


@pytest.mark.parametrize("argv", [
    ["vllm", "serve", "m", "--api-key", KEY],
    ["vllm", "serve", "m", f"--api-key={KEY}"],
    ["glmkit", "login", "--token", TOKEN],
    ["glmkit", "login", f"--token={TOKEN}"],
    ["x", "--hf-token", TOKEN, "--port", "8000"],
    ["docker", "run", "-e", f"HF_TOKEN={TOKEN}", "img"],  # a value from the environment
    ["curl", "-H", f"Authorization: Bearer {KEY}", "http://127.0.0.1:8000/v1/models"],
])
def test_a_failed_commands_secrets_are_masked(argv: list[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    err = CommandFailed(argv, 2, "", f"refused {KEY} and {TOKEN}")
    shown = str(err) + " ".join(err.argv)
    assert KEY not in shown and TOKEN not in shown
    assert "***" in str(err).partition("failed")[0]
    assert str(err).endswith("refused *** and ***")
    assert argv[0] in str(err) and argv[-1].replace(KEY, "***").replace(TOKEN, "***") in shown


def test_masking_keeps_every_other_word() -> None:
    argv = ["vllm", "serve", "--port", "8000", "--api-key", KEY, "--token-file", "f",
            "--api-key-file=k"]
    assert mask_argv(argv, ["800", None, ""]) == [
        "vllm", "serve", "--port", "8000", "--api-key", "***", "--token-file", "f",
        "--api-key-file=k"]  # short values are never masked: they hide nothing
    assert mask_argv(["a", "--token"]) == ["a", "--token"]  # a flag at the end has no value


def test_the_runner_masks_secrets_given_to_the_command(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)

    def fails(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 125, "", f"bad value {TOKEN}")

    monkeypatch.setattr(process.subprocess, "run", fails)
    argv = ["docker", "compose", "--env", f"T={TOKEN}", "up", "--detach"]
    with pytest.raises(CommandFailed) as caught:
        process.run(argv, env={"HF_TOKEN": TOKEN})
    assert TOKEN not in str(caught.value)
    assert str(caught.value).startswith("`docker compose --env 'T=***' up --detach` failed "
                                        "with exit code 125: bad value ***")

    def slow(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, 5)

    monkeypatch.setattr(process.subprocess, "run", slow)
    with pytest.raises(EnvironmentProblem, match=r"`docker compose --env 'T=\*\*\*' up "
                                                 r"--detach` did not finish in 5 s"):
        process.run(argv, env={"HF_TOKEN": TOKEN}, timeout=5)


def test_a_failed_tool_call_check_at_up_exits_as_a_check(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    """`up` got a healthy server whose answers were wrong: exit 7 (CheckFailed), not 5
    (ServerFailed), so a script can tell a bad parser from a server that never started."""
    from glmkit.run import deploy
    from glmkit.run.tool_check import CaseResult

    from .helpers import plan_for

    def up(deployment: Any, *_: Any, **__: Any) -> deploy.UpResult:
        bad = CaseResult("weather", "auto", False, True, False, "no tool call came back")
        return deploy.UpResult(plan_for(), 1.5, 1, [bad])

    monkeypatch.setattr(deploy, "up", up)
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "up", "--project", "check-7")
    assert code == CheckFailed.exit_code == 7, err
    assert "tool-call check failed: no tool call came back" in err
    assert "healthy" in out and "FAILED" in out
    with pytest.raises(CheckFailed):
        deploy.UpResult(plan_for(), 1.0, 1, [bad_case()]).check()
    deploy.UpResult(plan_for(), 1.0, 1, []).check()  # skipped: nothing to fail


def bad_case() -> Any:
    from glmkit.run.tool_check import CaseResult

    return CaseResult("weather", "required", True, False, False, "wrong arguments")
