"""The accuracy gate (#34): Wilson intervals, the one-sided test against measured
scores, thresholds on full runs and samples, and the reference table and saved
baselines read as untrusted files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glmkit.errors import UsageError
from glmkit.measure.eval_gate import (
    REFERENCES,
    Z95,
    Z_ONE_SIDED,
    Baseline,
    RunScore,
    Target,
    applicable,
    baseline_target,
    baselines_of,
    compare,
    load_references,
    read_baseline,
    save_baseline,
    wilson,
    z_below,
)

counts = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))


@given(counts)
def test_wilson_holds_the_rate_inside_zero_one(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert high - low > 0


@given(counts)
def test_wilson_narrows_with_more_questions(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson(k, n)
    low4, high4 = wilson(4 * k, 4 * n)
    assert high4 - low4 < high - low


@given(counts)
def test_wilson_bounds_are_the_roots_of_the_score_test(kn: tuple[int, int]) -> None:
    # Wilson's bounds are the rates p with (k/n - p)^2 = z^2 p (1 - p) / n.
    k, n = kn
    for bound in wilson(k, n):
        if bound not in (0.0, 1.0):
            assert math.isclose((k / n - bound) ** 2, Z95 ** 2 * bound * (1 - bound) / n,
                                rel_tol=1e-6, abs_tol=1e-12)


def test_wilson_known_value() -> None:
    assert wilson(0, 10)[0] == 0.0 and math.isclose(wilson(0, 10)[1], 0.2775, abs_tol=1e-4)


@given(counts, counts)
def test_z_is_antisymmetric_and_zero_for_equal_rates(a: tuple[int, int],
                                                     b: tuple[int, int]) -> None:
    assert math.isclose(z_below(*a, *b), -z_below(*b, *a), abs_tol=1e-9)
    assert z_below(a[0], a[1], a[0], a[1]) == 0.0


@given(st.integers(min_value=3, max_value=2000))
def test_z_grows_as_the_run_falls_below(n: int) -> None:
    assert z_below(n // 2, n, n, n) > z_below(n - 1, n, n, n) >= 0


def _target(kind: str = "measured", value: float = 0.9, n: int = 1319,
            protocol: str = "completions-5shot", **facts: str) -> Target:
    return Target("ref", kind, "flexible", value, n, protocol, "gsm8k", "https://x/y",
                  facts)  # type: ignore[arg-type]


def _run(correct: int, n: int, sample: bool = False, **facts: str) -> RunScore:
    return RunScore(n, {"strict": correct, "flexible": correct, "last-integer": correct},
                    "completions-5shot", "gsm8k", sample, facts)


def test_threshold_on_the_full_set_is_the_score_itself() -> None:
    t = _target("threshold", 0.84)
    assert compare(_run(1108, 1319), t).verdict == "pass"  # 0.8400
    assert compare(_run(1107, 1319), t).verdict == "fail"  # 0.8393


def test_threshold_on_a_sample_fails_only_when_the_interval_is_wholly_below() -> None:
    t = _target("threshold", 0.84)
    assert compare(_run(40, 50, sample=True), t).verdict == "pass"  # 0.80, CI to 0.89
    outcome = compare(_run(30, 50, sample=True), t)
    assert outcome.verdict == "fail" and "95% interval" in outcome.detail


def test_measured_fails_only_when_significantly_below() -> None:
    t = _target("measured", 1.0, 50)
    assert compare(_run(48, 50), t).verdict == "pass"  # z 1.43: a 2-point dip on 50
    broken = compare(_run(30, 50), t)
    assert broken.verdict == "fail" and "z = " in broken.detail
    big = _target("measured", 0.95, 1319)
    assert compare(_run(1180, 1319), big).verdict == "fail"  # 0.895 on the full set


def test_another_protocol_is_not_compared() -> None:
    outcome = compare(_run(10, 50), _target(protocol="lm-eval-5shot-chat"))
    assert outcome.verdict == "not compared" and not outcome.failed
    assert "lm-eval-5shot-chat" in outcome.line()


def test_the_line_names_what_differs() -> None:
    t = Target("ref", "threshold", "flexible", 0.84, 1319, "completions-5shot", "gsm8k",
               "https://x", {"quantization": "bf16", "hardware": "8x MI300X",
                             "engine_version": None}, gpu="mi300x")
    same = compare(_run(1200, 1319, quantization="bf16", hardware="AMD Instinct MI300X",
                        engine_version="0.26.0"), t)
    assert same.differences == ()
    other = compare(_run(1200, 1319, quantization="fp8", hardware="NVIDIA H100 80GB HBM3"), t)
    assert [d.split()[0] for d in other.differences] == ["quantization", "hardware"]
    assert "fp8 (reference: bf16)" in other.line()


def test_the_shipped_table_is_read_and_sourced() -> None:
    refs = load_references()
    flash = next(r for r in refs if r.id == "vllm-ci-glm-4.7-flash")
    assert (flash.kind, flash.value, flash.protocol, flash.metric) == \
        ("threshold", 0.84, "completions-5shot", "last-integer")
    root = Path(__file__).resolve().parents[2]
    for r in refs:  # a link, or a file of this repository that exists
        assert r.source.startswith("https://github.com/") or \
            (root / r.source.split("#")[0]).is_file(), r.id
    assert {r.kind for r in refs} == {"threshold", "measured"}
    assert [r.id for r in applicable(refs, "zai-org/GLM-4.7-FP8", "zai-org/GLM-4.7")] == \
        ["sglang-nightly-glm-4.7-fp8-mi35x"]
    assert applicable(refs, "glmkit/glm-tiny", None) == []


GOOD: dict[str, Any] = json.loads(REFERENCES.read_text())["references"][0]
HOSTILE = {
    "value above one": {"value": 1.5},
    "value NaN": {"value": float("nan")},
    "value as text": {"value": "0.84"},
    "n zero": {"n": 0},
    "n huge": {"n": 10 ** 30},
    "escape in hardware": {"hardware": "H100\x1b]8;;http://evil\x07"},
    "javascript source": {"source": "javascript:alert(1)"},
    "http source": {"source": "http://example.com/x"},
    "source outside the repo": {"source": "../../etc/passwd"},
    "absolute source": {"source": "/etc/passwd"},
    "path as id": {"id": "../../etc"},
    "unknown kind": {"kind": "vibes"},
    "unknown key": {"owner": "me"},
    "long note": {"note": "x" * 5000},
}


@pytest.mark.parametrize("change", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_reference_rows_are_refused_in_one_line(tmp_path: Path,
                                                        change: dict[str, Any]) -> None:
    path = tmp_path / "refs.json"
    path.write_text(json.dumps({"version": 1, "references": [{**GOOD, **change}]}))
    with pytest.raises(UsageError, match="reference table") as err:
        load_references(path)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
    assert len(str(err.value)) < 400


def test_a_table_that_is_not_json_or_too_big_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "refs.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="cannot be read"):
        load_references(bad)
    bad.write_text(json.dumps({"version": 1, "references": [GOOD, GOOD]}))
    with pytest.raises(UsageError, match="share an id"):
        load_references(bad)
    bad.write_text(" " * (2 * 1024 * 1024))
    with pytest.raises(UsageError, match="limit"):
        load_references(bad)


def _baseline(**change: Any) -> dict[str, Any]:
    return {"version": 1, "model": "glmkit/glm-tiny", "protocol": "completions-5shot",
            "dataset": "tiny-arith", "n": 50,
            "correct": {"strict": 50, "flexible": 50, "last_integer": 50},
            "run_id": "20260101-000000-glm-tiny", "created": "2026-01-01T00:00:00",
            **change}


def test_a_baseline_round_trips_and_is_found_by_model(tmp_path: Path) -> None:
    saved = save_baseline(tmp_path, Baseline.model_validate(_baseline()))
    assert saved.name == "glmkit--glm-tiny.completions-5shot.tiny-arith.json"
    [found] = baselines_of(tmp_path, "glmkit/glm-tiny")
    target = baseline_target(found, saved)
    assert (target.value, target.n, target.dataset, target.kind) == \
        (1.0, 50, "tiny-arith", "measured")
    assert baselines_of(tmp_path, "glmkit/glm-tiny-x") == []
    assert compare(RunScore(
        50, {"flexible": 30}, "completions-5shot", "tiny-arith", False), target).failed


@pytest.mark.parametrize("change", [
    {"correct": {"strict": 60, "flexible": 50, "last_integer": 50}},
    {"n": -1}, {"model": "x\x1b[2J"}, {"run_id": "../../etc"}, {"version": 2},
    {"serve_args": ["--x"] * 1000},
], ids=["more correct than n", "negative n", "escape", "path run id", "version",
        "too many args"])
def test_hostile_baselines_are_refused_in_one_line(tmp_path: Path,
                                                   change: dict[str, Any]) -> None:
    path = tmp_path / "glmkit--glm-tiny.completions-5shot.tiny-arith.json"
    path.write_text(json.dumps(_baseline(**change)))
    with pytest.raises(UsageError, match="Baseline .* is refused") as err:
        read_baseline(path)
    assert "\n" not in str(err.value)


def test_a_planted_baseline_link_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps(_baseline()))
    folder = tmp_path / "baselines"
    folder.mkdir()
    (folder / "glmkit--glm-tiny.completions-5shot.tiny-arith.json").symlink_to(outside)
    with pytest.raises(UsageError, match="cannot be read"):
        baselines_of(folder, "glmkit/glm-tiny")


def test_one_sided_threshold_constant() -> None:
    assert math.isclose(Z_ONE_SIDED, 1.6448536, abs_tol=1e-6)


def test_a_row_the_kit_measured_names_a_file_of_the_repo(tmp_path: Path) -> None:
    path = tmp_path / "refs.json"
    row = {**GOOD, "id": "glmkit-tiny", "model": "glmkit/glm-tiny",
           "checkpoint": "glmkit/glm-tiny", "dataset": "tiny-arith", "kind": "measured",
           "value": 0.98, "n": 60, "source": "scripts/train_tiny_tools.py"}
    path.write_text(json.dumps({"version": 1, "references": [row]}))
    assert load_references(path)[0].source == "scripts/train_tiny_tools.py"
