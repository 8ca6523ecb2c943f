"""How `invoke check` judges a reply, on replies made by hand (the real server's run is in
tests/e2e/test_cpu_e2e.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from glmkit.run.tool_check import (
    Reply,
    Request,
    ToolCase,
    _collect_stream,
    cases,
    judge,
    requests_for,
)

CASES = {c.name: c for c in cases().cases}
TYPED = CASES["typed-arguments"]


def calls_of(case: ToolCase) -> list[dict[str, Any]]:
    return [{"id": f"call_{i}", "name": c.name, "arguments": json.dumps(c.arguments)}
            for i, c in enumerate(case.calls)]


def test_the_right_reply_passes_exactly_and_structurally() -> None:
    req = Request(TYPED, "auto", False, True)
    reply = Reply("", TYPED.reasoning, calls_of(TYPED), "tool_calls")
    assert judge(req, reply, exact=True) is None
    assert judge(req, Reply("", "other thoughts", [{**calls_of(TYPED)[0], "arguments":
                                                    '{"city": "Lyon"}'}], "tool_calls"),
                 exact=False) is None


@pytest.mark.parametrize(("reply", "problem"), [
    (Reply("<tool_call>get_weather", "r", [], "stop"), "no tool call parsed"),
    (Reply("", "r", [{"id": "a", "name": "get_weather", "arguments": "{'city'"}],
           "tool_calls"), "not JSON"),
    (Reply("", "r", [{"id": "a", "name": "get_weather", "arguments": '{"days": 3}'}],
           "tool_calls"), "'city' is a required property"),
    (Reply("", "r", [{"id": "a", "name": "get_weather", "arguments": '{"city": 5}'}],
           "tool_calls"), "do not match the schema"),
    (Reply("", "r", [{"id": "a", "name": "rm_rf", "arguments": "{}"}], "tool_calls"),
     "not one of the tools"),
    (Reply("", "r", [{"id": "", "name": "get_weather", "arguments": '{"city": "X"}'}],
           "tool_calls"), "ids missing or repeated"),
    (Reply("", "r", [{"id": "a", "name": "get_weather", "arguments": '{"city": "X"}'}],
           "stop"), "finish_reason 'stop'"),
    (Reply("<think>x</think>", "", [], "stop"), "no reasoning"),
    (Reply("</think>", "r", [], "stop"), "leaked into content"),
])
def test_wrong_replies_say_what_is_wrong(reply: Reply, problem: str) -> None:
    assert problem in (judge(Request(TYPED, "auto", False, True), reply, exact=False) or "")


def test_exact_mode_compares_calls_answers_and_reasoning() -> None:
    req = Request(TYPED, "auto", False, True)
    wrong_city = [{**calls_of(TYPED)[0], "arguments": json.dumps(
        {**TYPED.calls[0].arguments, "city": "Lyon"})}]
    assert "expected" in (judge(req, Reply("", TYPED.reasoning, wrong_city, "tool_calls"),
                                exact=True) or "")
    after = CASES["after-tool-result"]
    good = Reply(after.answer, "", [], "stop")
    assert judge(Request(after, "auto", True, False), good, exact=True) is None
    assert "answer" in (judge(Request(after, "auto", True, False),
                              Reply("Nope.", "", [], "stop"), exact=True) or "")
    assert "reasoning with thinking off" in (judge(Request(after, "auto", True, False),
                                                   Reply(after.answer, "hm", [], "stop"),
                                                   exact=True) or "")
    none = Request(TYPED, "none", False, True)
    assert "none belong" in (judge(none, Reply("", "r", calls_of(TYPED), "tool_calls"),
                                   exact=True) or "")


def test_streamed_deltas_reassemble() -> None:
    def chunk(**delta: Any) -> Any:
        finish = delta.pop("finish", None)
        calls = [SimpleNamespace(index=i, id=cid, function=SimpleNamespace(name=n,
                                                                              arguments=a))
                 for i, cid, n, a in delta.pop("calls", [])]
        d = SimpleNamespace(content=delta.get("content"), tool_calls=calls,
                            model_extra={"reasoning": delta.get("reasoning")})
        return SimpleNamespace(choices=[SimpleNamespace(delta=d, finish_reason=finish)])

    reply = _collect_stream(iter([
        chunk(reasoning="Two "), chunk(reasoning="cities."),
        chunk(calls=[(0, "c0", "get_weather", '{"ci')]),
        chunk(calls=[(0, None, None, 'ty": "B"}')]),
        chunk(calls=[(1, "c1", "get_weather", '{"city": "T"}')]), chunk(finish="tool_calls"),
        SimpleNamespace(choices=[])]))
    assert reply == Reply("", "Two cities.", [
        {"id": "c0", "name": "get_weather", "arguments": '{"city": "B"}'},
        {"id": "c1", "name": "get_weather", "arguments": '{"city": "T"}'}], "tool_calls")


def test_the_matrix_covers_every_tool_choice_stream_and_thinking() -> None:
    full = requests_for(quick=False)
    assert {r.tool_choice for r in full} == {"auto", "required", "none", "get_weather",
                                             "get_time"}
    assert {(r.stream, r.thinking) for r in full} == {(s, t) for s in (True, False)
                                                      for t in (True, False)}
    assert {r.case.name for r in full} == set(CASES)
    assert [(r.stream, r.thinking) for r in requests_for(quick=True)] == \
        [(False, False), (True, True)]


def test_the_cases_file_reads_into_tool_cases() -> None:
    raw = json.loads((Path(__file__).resolve().parents[2] / "src" / "glmkit" / "data" /
                      "tool_cases.json").read_text())
    assert [c.name for c in cases().cases] == [c["name"] for c in raw["cases"]]
    for case, data in zip(cases().cases, raw["cases"], strict=True):
        assert [c.as_dict() for c in case.calls] == data.get("calls", [])
        assert case.answer == data.get("answer") and list(case.messages) == data["messages"]
        assert bool(case.calls) != (case.answer is not None)  # calls, or an answer
    assert list(cases().tools) == raw["tools"]


def test_the_tiny_model_is_made_again_when_its_recipe_changes(tmp_path: Path) -> None:
    from glmkit.run import tiny_model

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    recipe = tiny_model.recipe_hash(scripts, 2)
    assert recipe != tiny_model.recipe_hash(scripts, 4)
    assert not tiny_model.is_current(tmp_path, recipe)
    (tmp_path / tiny_model.INFO).write_text(json.dumps({"recipe": recipe}))
    assert tiny_model.is_current(tmp_path, recipe)
    (tmp_path / tiny_model.INFO).write_text(json.dumps({"layers": 2}))  # made before training
    assert not tiny_model.is_current(tmp_path, recipe)


def _twice_at_once(call: Callable[[], bool]) -> list[bool]:
    """`call` from two threads at once (two `invoke up`s); what each returned."""
    import threading

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(call())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return results


def test_two_ups_at_once_make_the_tiny_model_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Both workers of the suite start a tiny server at once: each used to empty the shared
    staging folder under the other's `docker run` (FileNotFoundError: /out/config.json)."""
    import time

    from glmkit.run import tiny_model

    made: list[Path] = []

    def fake_docker_run(argv: list[str]) -> None:
        staging = Path(next(a for a in argv if a.endswith(":/out")).rsplit(":", 1)[0])
        made.append(staging)
        time.sleep(0.3)  # the other `up` arrives meanwhile
        (staging / tiny_model.INFO).write_text(json.dumps({"layers": 2}))

    monkeypatch.setattr(tiny_model, "run", fake_docker_run)
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    out = tmp_path / "glm-tiny"
    results = _twice_at_once(lambda: tiny_model.generate("img", out, scripts))
    assert len(made) == 1 and sorted(results) == [False, True]
    assert tiny_model.is_current(out, tiny_model.recipe_hash(scripts, 2))


def test_two_builds_of_one_image_at_once_build_it_once(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from rich.console import Console

    from glmkit.knowledge.images import CPU_IMAGE
    from glmkit.run import image_build

    labels: dict[str, str] = {}
    built: list[list[str]] = []

    def fake_stream(argv: list[str], env: object = None) -> None:
        built.append(argv)
        time.sleep(0.3)  # the other build arrives meanwhile
        label = argv[argv.index("--label") + 1]
        labels[CPU_IMAGE.ref] = label.split("=", 1)[1]

    monkeypatch.setattr(image_build, "stream", fake_stream)
    monkeypatch.setattr(image_build, "fill_wheelhouse", lambda *_: None)
    monkeypatch.setattr(image_build, "image_label", lambda ref, _: labels.get(ref))
    monkeypatch.setattr(image_build, "_builder_env", dict)
    root = Path(__file__).resolve().parents[2]
    env = {"GLMKIT_HOME": str(tmp_path)}
    results = _twice_at_once(lambda: image_build.build_image(
        CPU_IMAGE, root, Console(file=None, quiet=True), env))
    assert len(built) == 1 and sorted(results) == [False, True]
