"""The README a newcomer reads and the docs pages behind it: short, in order, every
section linked, every link resolving, the configuration reference complete. (Their
commands run in tests/integration/test_docs_commands.py.)"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from glmkit.host.settings import TASK_OPTIONS, Settings, resolve_settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_readme_is_short_and_links_every_section() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    contents = next(p for p in text.split("\n\n") if p.startswith("**Contents:**"))
    linked = re.findall(r"\]\(#([^)]+)\)", contents)
    sections = [slug(h) for h in re.findall(r"^## (.+)$", text, re.M)]
    assert linked == sections
    # The order a first-time user works in: what it is, what it needs, the two commands,
    # the vendors, the clients and agents, where to go next.
    for earlier, later in [("requirements", "two-commands"), ("two-commands", "nvidia"),
                           ("cpu", "agents"), ("agents", "where-to-go-next")]:
        assert sections.index(earlier) < sections.index(later)
    # The test command's duration is said, in one place that is easy to update.
    assert re.search(r"<!-- test-minutes -->\d+<!-- /test-minutes --> minutes", text)


def test_every_docs_page_is_reached_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"(docs/{page.name})" in readme, page.name


def test_every_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_configuration_reference_names_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for f in fields(Settings):
        if f.name == "models":  # a model group: --model repeated, no flag of its own
            assert "| `--model` repeated | `models` | `GLMKIT_MODELS` |" in text
        elif "help" in f.metadata:
            assert f"`--{f.name.replace('_', '-')}`" in text, f.name
    for task, table in TASK_OPTIONS.items():
        for f in fields(table):
            assert f"| `{task.replace('_', '-')}` | `--{f.name.replace('_', '-')}` | " \
                f"`{f.default}` |" in text, (task, f.name)
    # Its invoke.yaml example is one glmkit reads as written.
    (example,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    section = yaml.safe_load(example)["glmkit"]
    settings, sources = resolve_settings({}, section, {})
    assert settings.project == "glm-air" and settings.mtp is True
    assert {sources[name] for name in section} == {"invoke.yaml"}


def test_fresh_times_stamps_each_readme_time_once() -> None:
    """scripts/fresh_times.py writes the measured minutes and how they were measured into
    the README's markers; a README without them is refused, not left half-stamped."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fresh_times",
                                                  ROOT / "scripts" / "fresh_times.py")
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    record = {"quickstart_s": 431, "test_s": 602, "measured": "measured 2026-12-07 on X"}
    text = fresh.stamped((ROOT / "README.md").read_text(), record)
    assert "<!-- quickstart-minutes -->7<!-- /quickstart-minutes -->" in text
    assert "<!-- test-minutes -->10<!-- /test-minutes -->" in text
    assert "<!-- fresh-times -->measured 2026-12-07 on X<!-- /fresh-times -->" in text
    with pytest.raises(SystemExit, match="quickstart-minutes"):
        fresh.stamped("no markers here", record)


def test_fresh_times_reads_the_steps_setup_and_quickstart_print() -> None:
    """Each step of scripts/setup.sh and quickstart.sh prints its seconds; fresh_times.py
    records them, so a fresh machine's minutes say where they went. The scripts and the
    parser agree: every step the scripts name is one the parser reads."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fresh_times",
                                                  ROOT / "scripts" / "fresh_times.py")
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    log = ("[glmkit] virtual environment done in 21 s\nnoise\n"
           "[glmkit] CPU image done in 180 s\n[glmkit] up done in 60 s\n"
           "[glmkit] up done in 2 s\n  [glmkit] indented done in 3 s\n")
    assert fresh.steps(log) == {"virtual environment": 21, "CPU image": 180, "up": 62}
    named = [name for script in ("setup.sh", "quickstart.sh")
             for name in re.findall(r'^\s*(?:trap .*)?step "([^"]+)"',
                                    (ROOT / "scripts" / script).read_text(), re.M)]
    assert named == ["virtual environment", "Docker engine", "base image", "CPU image",
                     "tiny model", "up", "down", "chat", "check", "bench"]
    # What step() echoes, with its name and seconds filled in, is what the parser reads
    # (unit tests start no program: the echo is expanded here, not by bash).
    for script in ("setup.sh", "quickstart.sh"):
        define = next(line for line in (ROOT / "scripts" / script).read_text().splitlines()
                      if line.startswith("step() {"))
        echoed = re.search(r'echo "([^"]*)"', define)
        assert echoed, define
        printed = re.sub(r"\$\(\([^)]*\)\)", "7", echoed[1].replace("$1", "x y"))
        assert fresh.steps(printed + "\n") == {"x y": 7}, (script, printed)


def test_the_readme_says_what_the_fresh_times_record_measured() -> None:
    """The README's minutes and its line come from docs/fresh-times.json, as
    `fresh_times.py --from-record` writes them: an edit of one without the other fails."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("fresh_times",
                                                  ROOT / "scripts" / "fresh_times.py")
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    record = json.loads((ROOT / "docs" / "fresh-times.json").read_text())
    assert record["measured"] == fresh.measured(record)
    readme = (ROOT / "README.md").read_text()
    assert fresh.stamped(readme, record) == readme
