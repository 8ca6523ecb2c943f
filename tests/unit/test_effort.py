"""Reasoning effort through every API: `invoke check` asks low, high and max, and on the
tiny model expects the reasoning that names the effort its chat template received."""

from __future__ import annotations

from glmkit.run.tool_check import Request, cases, expected_reasoning, requests_for


def test_every_api_asks_each_effort_and_expects_it_named() -> None:
    efforts = [r for r in requests_for(quick=False) if r.effort]
    assert {(r.effort, r.stream) for r in efforts} == {(e, s) for e in ("low", "high", "max")
                                                      for s in (True, False)}
    assert all(r.thinking and r.tool_choice == "auto" for r in efforts)
    case = efforts[0].case
    said = {expected_reasoning(Request(case, "auto", False, True, e))
            for e in ("low", "high", "max")}
    assert len(said) == 3 and case.reasoning in said  # max is the default's
    assert expected_reasoning(Request(case, "auto", False, True)) == case.reasoning
    assert {c.name for c in cases().cases if c.effort_reasoning} == {case.name}
