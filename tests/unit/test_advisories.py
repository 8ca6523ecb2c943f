"""Advisories (#36): what vendors and upstream threads know that the recipes do not say,
as data (knowledge/advisories.yaml), reaching `plan`, `render`/`up`, `doctor` and `check`.

The plan-side tests go through the synced upstream fixture (tests/data/recipes-upstream):
GLM-5.3-Flash, the 288-expert FP8 shape, is no built-in model."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.knowledge import advisories as adv
from glmkit.knowledge import recipes
from glmkit.knowledge.advisories import (
    Advisory,
    AdvisoryRefused,
    Applies,
    CheckTarget,
    Situation,
    VllmRange,
    cut_finish_reasons,
    matches,
    read_table,
)
from glmkit.run.tool_check import Reply, Request, cases, judge, parser_wrong, requests_for

from .helpers import plan_for
from .test_recipe_upstream import synced_env

FLASH = "zai-org/GLM-5.3-Flash"
MOE_FIX = "VLLM_ROCM_USE_AITER_MOE"


@pytest.fixture(autouse=True)
def no_git_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)


def _by_id() -> dict[str, Advisory]:
    return {a.id: a for a in adv.advisories()}


def _with(monkeypatch: pytest.MonkeyPatch, *changed: Advisory) -> None:
    """glmkit's table with these advisories in place of those of the same id (or added)."""
    table = {**_by_id(), **{a.id: a for a in changed}}
    monkeypatch.setattr(adv, "advisories", lambda: tuple(table.values()))


def _rocm(env: dict[str, str], gpu: str = "mi355x", model: str = FLASH, **more: Any) -> Any:
    return plan_for(env=env, vendor="rocm", model=model, gpu=gpu, gpu_count=8, **more)


def _environment(plan: Any) -> dict[str, str]:
    """The container's environment as the compose file has it."""
    from glmkit.render.compose import compose_dict, dump

    service = yaml.safe_load(dump(compose_dict(plan)))["services"]["vllm"]
    # Secrets come by name only (no `=`): not this test's concern.
    return dict(item.split("=", 1) for item in service["environment"] if "=" in item)


# --- the table ------------------------------------------------------------------------

def test_the_table_has_the_issues_items_each_with_its_sources() -> None:
    table = _by_id()
    cited = {a.id: {s.short for s in a.sources} for a in table.values()}
    wanted = {"aiter-moe-288-experts-fp8": {"ROCm/aiter#5049", "vllm-project/recipes#857"},
              "aiter-mla-gluon-gfx942": {"ROCm/aiter#4831"},
              "glm47-fp8-slower-than-bf16-mi300x": {"vllm-project/vllm#31475"},
              "rocm-glm5-mxfp4-accuracy": {"vllm-project/vllm#54924"},
              "glm-forced-tool-choice-unconstrained": {"vllm-project/vllm#47175",
                                                       "vllm-project/vllm#56268"},
              "tool-call-cut-by-max-tokens": {"vllm-project/vllm#46303"},
              "responses-tool-markup-in-text": {"vllm-project/vllm#36435"},
              "messages-x-api-key-refused": {"vllm-project/vllm#51572"}}
    for name, sources in wanted.items():
        assert sources <= cited[name], name
    moe = table["aiter-moe-288-experts-fp8"]
    assert moe.action.env == {MOE_FIX: "0"}
    assert (moe.applies.experts, moe.applies.experts_per_token) == (288, 8)
    assert moe.applies.gpu_ids() == {"mi350x", "mi355x"}  # gfx950
    assert table["aiter-mla-gluon-gfx942"].applies.gpu_ids() == {"mi300x", "mi325x"}
    assert table["rocm-glm5-mxfp4-accuracy"].action.text.count("invoke eval") == 1
    for a in table.values():  # what could not be confirmed is recorded
        assert a.confirmed and a.vllm.checked == date(2026, 12, 7)
        assert a.unconfirmed or a.vllm.known


def test_the_check_symptoms_upstream_issues_were_named_by_come_from_the_table() -> None:
    from glmkit.run import api_check

    assert "vllm#36435" in api_check.KNOWN["tool markup in text"]
    assert "vllm#51572" in api_check.KNOWN["x-api-key refused"]


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "advisories.yaml"
    path.write_text(text)
    return path


GOOD = {"id": "x", "title": "t", "sources": [{"url": "https://github.com/o/r/issues/1",
                                              "says": "s"}],
        "confirmed": "c", "vllm": {"seen_from": "any", "fixed_in": "open",
                                   "checked": "2026-12-07"},
        "action": {"kind": "note", "text": "n"}}


@pytest.mark.parametrize(("edit", "where"), [
    (lambda a: a.update(title="line\x1b[2J"), "title"),
    (lambda a: a.update(surprise=1), "surprise"),
    (lambda a: a["action"].update(kind="env", env={MOE_FIX: "$(reboot)"}), "action.env"),
    (lambda a: a["action"].update(env={MOE_FIX: "0"}), "action"),
    (lambda a: a["sources"][0].update(url="http://example.com/x"), "sources.0.url"),
    (lambda a: a.update(sources=[]), "sources"),
    (lambda a: a["vllm"].update(fixed_in="soon"), "vllm.fixed_in"),
    (lambda a: a.update(applies={"experts": 0}), "applies.experts"),
    (lambda a: a.update(applies={"gpus": ["MI355X; rm"]}), "applies.gpus.0"),
    (lambda a: a["action"].update(kind="check"), "check action needs a check rule"),
])
def test_a_bad_advisory_is_refused_in_one_line_naming_the_key(
        tmp_path: Path, edit: Any, where: str) -> None:
    entry = yaml.safe_load(yaml.safe_dump(GOOD))
    edit(entry)
    with pytest.raises(AdvisoryRefused) as refused:
        read_table(_table(tmp_path, yaml.safe_dump({"advisories": [entry]})))
    assert where in str(refused.value) and "\n" not in str(refused.value)
    assert "\x1b" not in str(refused.value)


def test_a_table_too_large_or_repeating_an_id_or_bombing_aliases_is_refused(
        tmp_path: Path) -> None:
    for table, why in (({"advisories": [GOOD] * 2}, "given twice"),
                       ({"advisories": [{**GOOD, "id": f"a{i}"} for i in range(201)]},
                        "at most 200")):
        with pytest.raises(AdvisoryRefused, match=why):  # JSON is YAML without aliases
            read_table(_table(tmp_path, json.dumps(table)))
    bomb = "a: &a [x, x]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}]\n"
                                      for i in range(12))
    with pytest.raises(AdvisoryRefused, match="aliases"):
        read_table(_table(tmp_path, bomb))
    assert len(read_table(_table(tmp_path, yaml.safe_dump({"advisories": [GOOD]})))) == 1


@pytest.mark.parametrize(("seen", "fixed", "before", "version", "floor", "holds"), [
    ("0.27.0", "open", "unknown", "0.33.0", False, True),
    ("0.27.0", "open", "unknown", "0.29.0", True, True),  # a nightly past seen_from
    ("0.27.0", "open", "unknown", "0.26.0", False, None),  # below: not known
    ("0.27.0", "open", "unaffected", "0.26.0", False, False),
    ("0.27.0", "0.30.0", "unknown", "0.30.0", False, False),  # fixed
    ("0.27.0", "0.30.0", "unknown", "0.28.0", True, None),  # a nightly may be past it
    ("0.27.0", "0.30.0", "unknown", "0.28.0", False, True),
    ("any", "open", "unknown", "0.11.0", False, True),
    ("unknown", "open", "unknown", "0.33.0", False, None),  # a range not known
    ("any", "unknown", "unknown", "0.33.0", False, None),
    ("any", "open", "unknown", None, False, None),  # a version not known
])
def test_an_advisory_holds_only_where_its_vllm_range_places_the_version(
        seen: str, fixed: str, before: str, version: str | None, floor: bool,
        holds: bool | None) -> None:
    r = VllmRange.model_validate({"seen_from": seen, "fixed_in": fixed, "before": before,
                                  "checked": "2026-12-07"})
    assert r.holds(version, floor) is holds


def test_the_expert_shape_finds_a_checkpoint_the_table_does_not_name() -> None:
    moe = _by_id()["aiter-moe-288-experts-fp8"].applies
    base = Situation(vendor="rocm", gpu="mi355x", model="someone/My-Flash-Finetune",
                     precision="fp8", experts=288, experts_per_token=8)
    assert matches(moe, base)
    assert matches(moe, dataclasses.replace(base, experts=None, model=FLASH))  # by name
    for other in (dict(experts=256), dict(experts_per_token=4), dict(precision="bf16"),
                  dict(gpu="mi300x"), dict(gpu=None), dict(vendor="cuda")):
        assert not matches(moe, dataclasses.replace(base, **other)), other
    assert matches(Applies(), base)  # no condition: everything


# --- env: a ROCm render of the synced 288-expert model ----------------------------------

def test_a_rocm_render_of_the_288_expert_fp8_model_sets_aiters_moe_off(
        tmp_path: Path) -> None:
    env = synced_env(tmp_path)
    plan = _rocm(env)
    assert _environment(plan)[MOE_FIX] == "0"
    assert _environment(plan)["VLLM_ROCM_USE_AITER"] == "1"  # the recipe's, kept
    line = next(n for n in plan.notes if n.startswith("advisory aiter-moe-288"))
    assert "ROCm/aiter#5049" in line and f"sets {MOE_FIX}=0" in line
    assert line in plan.advisories
    # Where the fault is not known: another GPU, another precision, another vendor.
    for other in (_rocm(env, gpu="mi300x"), _rocm(env, model="zai-org/GLM-5.3-Flash-BF16"),
                  plan_for(env=env, vendor="cuda", model=FLASH, gpu="h200", gpu_count=8)):
        assert MOE_FIX not in _environment(other)
        assert not any("aiter-moe-288" in n for n in other.notes)


def test_no_built_in_model_is_given_the_288_expert_workaround() -> None:
    from glmkit.knowledge.catalog import CATALOG

    for model_id, spec in CATALOG.items():
        s = Situation(vendor="rocm", gpu="mi355x", model=model_id, precision=spec.precision)
        assert not matches(_by_id()["aiter-moe-288-experts-fp8"].applies, s), model_id


def test_an_advisorys_value_replaces_the_recipes_and_says_so(tmp_path: Path) -> None:
    env = synced_env(tmp_path, lambda d: d["hardware_overrides"]["amd"]["extra_env"].update(
        {MOE_FIX: "1"}))
    plan = _rocm(env)
    assert _environment(plan)[MOE_FIX] == "0"
    assert f"advisory: {MOE_FIX}=0 replaces the recipe's {MOE_FIX}=1" in plan.notes


def test_an_advisorys_environment_passes_the_input_policy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env action reaches the container through glmkit.policy like a recipe's: only
    the names a recipe may set, never a secret."""
    moe = _by_id()["aiter-moe-288-experts-fp8"]
    env = synced_env(tmp_path)
    _with(monkeypatch, moe.model_copy(update={"action": moe.action.model_copy(
        update={"env": {MOE_FIX: "0", "VLLM_PLUGINS": "evil"}})}))
    plan = _rocm(env)
    assert "VLLM_PLUGINS" not in _environment(plan) and _environment(plan)[MOE_FIX] == "0"
    assert any("left out VLLM_PLUGINS from the advisory" in n for n in plan.notes)
    _with(monkeypatch, moe.model_copy(update={"action": moe.action.model_copy(
        update={"env": {"VLLM_API_KEY": "x"}})}))
    secret = _rocm(env)
    assert "VLLM_API_KEY" not in _environment(secret)  # by name only, from glmkit's own
    assert any("left out VLLM_API_KEY from the advisory" in n for n in secret.notes)


def test_a_range_not_known_notes_the_workaround_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moe = _by_id()["aiter-moe-288-experts-fp8"]
    _with(monkeypatch, moe.model_copy(update={"vllm": moe.vllm.model_copy(
        update={"seen_from": "unknown"})}))
    plan = _rocm(synced_env(tmp_path))
    assert MOE_FIX not in _environment(plan)
    line = next(n for n in plan.notes if n.startswith("advisory aiter-moe-288"))
    assert "not set here" in line and f"the workaround is {MOE_FIX}=0" in line


def test_a_release_with_the_fix_gets_no_workaround(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moe = _by_id()["aiter-moe-288-experts-fp8"]
    _with(monkeypatch, moe.model_copy(update={"vllm": moe.vllm.model_copy(
        update={"fixed_in": "0.31.0"})}))
    env = synced_env(tmp_path)
    fixed = _rocm(env, image="vllm/vllm-openai-rocm:v0.31.0")
    assert MOE_FIX not in _environment(fixed)
    nightly = _rocm(env)  # the recipe's nightly: at least 0.29.0, maybe past the fix
    assert MOE_FIX not in _environment(nightly)
    assert any("not set here" in n for n in nightly.notes if "aiter-moe-288" in n)


# --- refuse ---------------------------------------------------------------------------

def _mla_on(d: dict[str, Any]) -> None:
    d["hardware_overrides"]["amd"]["extra_env"]["VLLM_ROCM_USE_AITER_MLA"] = "1"


def test_aiter_mla_from_a_recipe_is_refused_on_gfx942_before_anything_starts(
        tmp_path: Path) -> None:
    env = synced_env(tmp_path, _mla_on)
    for gpu in ("mi300x", "mi325x"):
        with pytest.raises(UsageError) as refused:
            _rocm(env, gpu=gpu)
        message = str(refused.value)
        assert "mla_gluon requires gfx950" in message and "ROCm/aiter#4831" in message
        assert "aiter-mla-gluon-gfx942" in message and "\n" not in message
    assert _environment(_rocm(env))["VLLM_ROCM_USE_AITER_MLA"] == "1"  # gfx950 serves
    _rocm(synced_env(tmp_path / "plain"), gpu="mi300x")  # without the switch: planned


def test_invoke_plan_says_up_refuses_it(tmp_path: Path) -> None:
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    env = synced_env(tmp_path, _mla_on)
    rows = [v for k, v in advise(PlanRequest(model=FLASH, vendor="rocm", gpu="mi300x",
                                             gpu_count=8), NO_GPU, env).rows
            if k == "advisory"]
    assert any("refuse this plan" in r and "ROCm/aiter#4831" in r for r in rows)


# --- note: plan, up, doctor -----------------------------------------------------------

def test_a_note_reaches_plan_up_and_doctor(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.host.settings import Settings
    from glmkit.plan.advice import PlanRequest, advise
    from glmkit.run import doctor

    from .helpers import NO_GPU

    env = synced_env(tmp_path)
    note = "advisory glm-forced-tool-choice-unconstrained"
    assert any(n.startswith(note) and "vllm#47175" in n for n in _rocm(env).notes)  # up
    rows = [v for k, v in advise(PlanRequest(model=FLASH, vendor="rocm", gpu="mi355x",
                                             gpu_count=8), NO_GPU, env).rows
            if k == "advisory"]
    assert any(r.startswith("aiter-moe-288") and f"sets {MOE_FIX}=0" in r for r in rows)
    assert any(r.startswith("glm-forced-tool-choice") for r in rows)  # plan
    monkeypatch.setattr(doctor, "run_doctor", lambda **kw: [])
    checks = doctor.diagnose(Settings(model=FLASH, vendor="rocm", gpu="mi355x",
                                      gpu_count=8, port=18099), {"model": "flag"},
                             {**env, "GLMKIT_HARDWARE": str(Path(__file__).parents[1] /
                                                            "cpu-host.json")})
    named = {c.name: c for c in checks}
    assert named["plan"].status == "ok"
    assert named["advisory glm-forced-tool-choice-unconstrained"].status == "warn"
    assert "vllm#47175" in named["advisory glm-forced-tool-choice-unconstrained"].detail
    assert f"sets {MOE_FIX}=0" in named["advisory aiter-moe-288-experts-fp8"].detail
    assert named["hardware note"].detail.startswith("hardware note for 8 × MI355X")


# --- check: a tool call cut by max_tokens, and what a failed row is known by ------------

def _cut(stream: bool = False) -> Request:
    return next(r for r in requests_for(quick=False) if r.max_tokens and r.stream == stream)


def test_the_chat_matrix_has_a_cut_call_reusing_a_case_and_the_other_apis_do_not() -> None:
    cut = [r for r in requests_for(quick=False) if r.max_tokens]
    assert [(r.stream, r.thinking, r.tool_choice) for r in cut] == [
        (False, False, "auto"), (True, False, "auto")]
    assert cut[0].case in cases().cases and cut[0].max_tokens == 8
    assert cut[0].label == "typed-arguments (cut at 8 tokens)"
    for api in ("messages", "responses"):
        assert not any(r.max_tokens for r in requests_for(quick=False, api=api))


def test_the_cut_call_is_sent_with_its_small_max_tokens() -> None:
    from types import SimpleNamespace

    from glmkit.run.tool_check import ask

    sent: dict[str, Any] = {}

    def create(**body: Any) -> Any:
        sent.update(body)
        message = SimpleNamespace(content="", tool_calls=None, model_extra={})
        return SimpleNamespace(choices=[SimpleNamespace(message=message,
                                                        finish_reason="length")])

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    assert ask(client, "m", _cut()).finish_reason == "length"
    assert sent["max_tokens"] == 8


@pytest.mark.parametrize(("finish", "version", "fixed", "ok"), [
    ("length", "0.32.0", "open", True),  # what OpenAI says: always right
    ("tool_calls", "0.32.0", "open", True),  # the advisory holds: accepted
    ("tool_calls", None, "open", True),  # a nightly: not known to be fixed
    ("tool_calls", "0.35.0", "0.35.0", False),  # a release with the fix
    ("length", "0.35.0", "0.35.0", True),
    ("stop", "0.32.0", "open", False),
])
def test_the_cut_rows_finish_reason_is_what_the_advisory_allows(
        finish: str, version: str | None, fixed: str, ok: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cut = _by_id()["tool-call-cut-by-max-tokens"]
    _with(monkeypatch, cut.model_copy(update={"vllm": cut.vllm.model_copy(
        update={"fixed_in": fixed})}))
    allowed = cut_finish_reasons(CheckTarget(vllm_version=version))
    partial = [{"id": "c0", "name": "get_weather", "arguments": '{"ci'}]
    problem = judge(_cut(), Reply("", "", partial, finish), exact=True, cut_finish=allowed)
    assert (problem is None) == ok, problem
    if not ok:
        assert "cut by max_tokens" in (problem or "") and "'length'" in (problem or "")
    assert not parser_wrong(problem)


def test_the_chat_check_judges_cut_rows_by_the_servers_version(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.run import tool_check

    def ask(client: Any, model: str, req: Request, max_tokens: int = 256) -> Reply:
        if not req.max_tokens:
            raise RuntimeError("not this row")
        return Reply("", "", [{"id": "c", "name": "get_weather", "arguments": "{"}],
                     "tool_calls")

    monkeypatch.setattr(tool_check, "ask", ask)

    def cut_rows(version: str) -> list[str | None]:
        run = tool_check.chat_matrix("http://127.0.0.1:9", "m", None, exact=True,
                                     target=CheckTarget(vllm_version=version))
        return [p for r, p in run.answered if r.max_tokens]

    assert cut_rows("0.32.0") == [None, None]  # no release has the fix: accepted
    cut = _by_id()["tool-call-cut-by-max-tokens"]
    _with(monkeypatch, cut.model_copy(update={"vllm": cut.vllm.model_copy(
        update={"fixed_in": "0.32.0"})}))
    assert all("expected 'length'" in (p or "") for p in cut_rows("0.32.0"))


def test_a_forced_choice_glm_failure_names_its_upstream_issue_and_does_not_stop_the_check(
        ) -> None:
    from glmkit.run.tool_check import known_upstream

    typed = cases().by_name("typed-arguments")
    no_call = ("no tool call parsed (content: '<tool_call>get_weather'): is "
               "--tool-call-parser right for this model?")
    glm = CheckTarget(tool_parser="glm47")
    for choice in ("required", "get_weather"):
        named = known_upstream(no_call, Request(typed, choice, False, False), glm)
        assert named is not None and "[upstream: vllm-project/vllm#47175" in named
        assert not parser_wrong(named)
    # auto, or another parser: the parser may well be wrong, and the check says so.
    assert known_upstream(no_call, Request(typed, "auto", False, False), glm) == no_call
    assert known_upstream(no_call, Request(typed, "required", False, False),
                          CheckTarget(tool_parser="hermes")) == no_call
    assert parser_wrong(no_call)
