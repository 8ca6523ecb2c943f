"""The docs pages' commands run as written, where they need no GPU and start nothing:
`render`, `plan`, `export`, `config`, `models`, `recipes list`, and each `up` as the
`render` of the same options (the plan and the validated compose file `up` would start).
In this process through invoke's Program, files under a temporary folder; rendering
validates with `docker compose config`, so this lives beside the engine tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.unit.test_cli_trust import run_task

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DRY = {"render", "plan", "export", "config", "models"}
UP_ONLY = {"--api-key-file": 1, "--api-key": 1, "--no-smoke": 0, "--smoke": 0}


def documented() -> list[tuple[str, list[str]]]:
    """(page, argv) of every `invoke` line in a code block, comments and `\\` joins read
    as a shell reads them."""
    found = []
    for page in PAGES:
        for block in re.findall(r"(?ms)^```[a-z]*\n(.*?)^```", page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith("invoke "):
                    found.append((page.name, shlex.split(line, comments=True)[1:]))
    return found


def dry_run(argv: list[str]) -> list[str] | None:
    """The argv to run for a documented command, or None when it needs a GPU, a server,
    the network or a placeholder filled in."""
    if any("<" in word for word in argv) or argv[0] == "-f":
        return None
    if argv[0] == "up":  # what `up` would start, without starting it
        out, skip = ["render"], 0
        for word in argv[1:]:
            if skip:
                skip -= 1
            elif word in UP_ONLY:
                skip = UP_ONLY[word]
            else:
                out.append(word)
        return out
    if argv[0] in DRY or argv[:2] == ["recipes", "list"] \
            or "--help" in argv:
        return argv
    return None


COMMANDS = [(page, argv, dry) for page, argv in documented() if (dry := dry_run(argv))]


def test_the_docs_have_commands_to_run() -> None:
    assert len(COMMANDS) >= 20
    assert {argv[0] for _, argv, _ in COMMANDS} >= {"up", "render", "plan", "export"}


@pytest.mark.usefixtures("compose_cli")
@pytest.mark.parametrize(("page", "argv", "dry"), COMMANDS,
                         ids=[f"{p}:{' '.join(a)[:60]}" for p, a, _ in COMMANDS])
def test_a_documented_command_runs_as_written(page: str, argv: list[str], dry: list[str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("VLLM_API_KEY", "sk-docs-test")  # `up` examples that name a key
    # `~` as the shell expands it; the reader's media folder exists on their machine.
    dry = [re.sub(r"^~(?=/)", str(home), word) for word in dry]
    if "--media-dir" in dry:
        Path(dry[dry.index("--media-dir") + 1]).mkdir(parents=True)
    code, out, err = run_task(monkeypatch, capsys, tmp_path, *dry)
    assert code == 0, f"{page}: invoke {shlex.join(argv)}\n{err}{out}"
    assert "Traceback" not in err
