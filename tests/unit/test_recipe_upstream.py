"""Upstream's recipe schema as it is written today (issue #22).

`tests/data/recipes-upstream` holds upstream's newest GLM files: a sync of it serves every
chat recipe and leaves no key unreported; each key glmkit reads has its type and limits,
and a synced file's hostile values are refused with a one-line note.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.knowledge import recipes
from glmkit.knowledge.recipe_schema import (
    MAX_UNKNOWN_SHOWN,
    RecipeDoc,
    RecipeRefused,
    StrategyDoc,
    check_recipe,
    check_strategy,
    describe_unknown,
    read_yaml,
)
from glmkit.knowledge.recipes import diff, load_book, sync

UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "recipes-upstream"


@pytest.fixture(autouse=True)
def no_git_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"GLMKIT_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}


def upstream_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "upstream"
    if not folder.exists():
        shutil.copytree(UPSTREAM, folder)
    return folder


def _paths(value: Any, schema: Any, prefix: str = "") -> set[str]:
    """Every key path of a YAML document, with the names of a mapping of entries
    (variants, GPUs, modes) as `*`: what the schema is asked about. `schema` tells an
    entry mapping (a dict of models) from a model, read from the pydantic annotations."""
    import typing

    from pydantic import BaseModel

    found: set[str] = set()
    if not isinstance(value, dict):
        return found

    def models_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
        """(the model class an annotation holds, whether it is a dict of them)."""
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, False
        if origin is dict:
            inner, _ = models_in(args[1])
            return inner, inner is not None
        for arg in args:
            inner, many = models_in(arg)
            if inner is not None:
                return inner, many
        return None, False

    for key, item in value.items():
        path = f"{prefix}{key}"
        found.add(path)
        field = schema.model_fields.get(key) if schema is not None else None
        inner, many = models_in(field.annotation) if field is not None else (None, False)
        if inner is None:
            continue
        if many and isinstance(item, dict):
            for entry in item.values():
                found |= _paths(entry, inner, f"{path}.*.")
        else:
            found |= _paths(item, inner, f"{path}.")
    return found


def _declared(path: str, schema: Any) -> bool:
    """Whether the schema declares every step of `path` (a `*` steps into entries)."""
    import typing

    from pydantic import BaseModel

    current: Any = schema
    parts = path.split(".")
    index = 0
    while index < len(parts):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return True  # a value the schema types as a whole (docker_image, companion)
        field = current.model_fields.get(parts[index])
        if field is None:
            return False
        annotation: Any = field.annotation
        index += 1
        # Unwrap Optional / dict[str, Model] to the next model, a `*` per dict.
        while True:
            origin, args = typing.get_origin(annotation), typing.get_args(annotation)
            if origin is dict and index < len(parts) and parts[index] == "*":
                annotation, index = args[1], index + 1
            elif args and origin is not dict and any(
                    (isinstance(a, type) and issubclass(a, BaseModel)) or
                    typing.get_origin(a) is dict for a in args):
                annotation = next(a for a in args if (isinstance(a, type) and issubclass(
                    a, BaseModel)) or typing.get_origin(a) is dict)
            else:
                break
        current = annotation
    return True


def _declared_taxonomy(path: str) -> bool:
    from glmkit.knowledge.recipe_schema import HardwareProfile, TaxonomyDoc

    if path.startswith("hardware_profiles.*."):
        return path.removeprefix("hardware_profiles.*.") in HardwareProfile.model_fields
    return path in TaxonomyDoc.model_fields


def test_a_taxonomy_with_odd_keys_is_reported_not_crashed_on(tmp_path: Path) -> None:
    folder = upstream_copy(tmp_path)
    text = (folder / "taxonomy.yaml").read_text()
    (folder / "taxonomy.yaml").write_text(text + "\n7: x\n\"new\\e[2J\": 1\n")
    result = sync(str(folder), env_for(tmp_path))
    keys = dict(result.unknown)["taxonomy.yaml"]
    assert "7" in keys and not any("\x1b" in k for k in keys)


def test_upstream_newest_glm_files_sync_with_no_key_left_unreported(tmp_path: Path) -> None:
    result = sync(str(upstream_copy(tmp_path)), env_for(tmp_path))
    assert result.notes == ()  # no file skipped
    assert "zai-org/GLM-5.3" in result.recipes and "zai-org/GLM-5.3-Flash" in result.recipes
    reported = {path: set(keys) for path, keys in result.unknown}
    files = sorted((UPSTREAM / "models/zai-org").glob("*.yaml")) + sorted(
        (UPSTREAM / "strategies").glob("*.yaml"))
    assert len(files) >= 20
    for file in files:
        schema = StrategyDoc if file.parent.name == "strategies" else RecipeDoc
        relative = str(file.relative_to(UPSTREAM))
        for path in _paths(read_yaml(file), schema):
            if not _declared(path, schema):
                # The path itself or a key above it is reported for this file.
                assert any(path == k or path.startswith(f"{k}.")
                           for k in reported.get(relative, ())), (relative, path)
    # What today's upstream writes that glmkit does not read, file by file.
    assert reported == {
        "models/zai-org/GLM-5.3-Flash.yaml": {
            "model.install", "variants.*.hardware_overrides.*.install"},
        "strategies/multi_node_tp_dp.yaml": {"parallelism"},
        "strategies/multi_node_tp_pp.yaml": {"parallelism"},
        "strategies/single_node_dpa_tp.yaml": {"kv_offload", "parallelism"},
        # Review of #22, finding 8: the taxonomy's keys are reported too.
        "taxonomy.yaml": {"kv_offload", "kv_offload_groups", "strategies", "tasks",
                          "hardware_profiles.*.multi_node", "hardware_profiles.*.restricted",
                          "hardware_profiles.*.scalable"},
    }
    taxonomy = read_yaml(UPSTREAM / "taxonomy.yaml")
    for key, value in taxonomy.items():
        paths = {key} if key != "hardware_profiles" else {
            f"hardware_profiles.*.{k}" for profile in value.values() for k in profile}
        for path in paths:
            assert _declared_taxonomy(path) or path in reported["taxonomy.yaml"], path


@pytest.mark.parametrize("where", [
    ("top",), ("model",), ("variants", "default"), ("features", "spec_decoding"),
    ("features", "spec_decoding", "modes", "mtp"), ("hardware_notes", "mi355x"),
])
def test_a_key_glmkit_does_not_know_is_reported_wherever_it_is(tmp_path: Path,
                                                               where: tuple[str, ...]) -> None:
    folder = upstream_copy(tmp_path)
    path = folder / "models/zai-org/GLM-5.3-Flash.yaml"
    data = yaml.safe_load(path.read_text())
    block = data
    for step in where[1:] if where[0] == "top" else where:
        block = block[step]
    block["brand_new_key"] = {"anything": 1}
    path.write_text(yaml.safe_dump(data))
    result = sync(str(folder), env_for(tmp_path))
    keys = dict(result.unknown)["models/zai-org/GLM-5.3-Flash.yaml"]
    steps = [("*" if i % 2 else s) if where[0] in ("variants", "features", "hardware_notes")
             else s for i, s in enumerate(where)]
    expected = "brand_new_key" if where == ("top",) else ".".join([*steps, "brand_new_key"])
    assert expected in keys
    assert any("brand_new_key" in note for note in result.unknown_notes())


def test_unknown_keys_are_shown_on_one_line_within_limits() -> None:
    keys = [f"k{i}" for i in range(MAX_UNKNOWN_SHOWN + 5)]
    assert describe_unknown(keys).endswith("(and 5 more)")
    hostile = {"model": {"model_id": "x/y", "\x1b[31mred\nline" + "x" * 500: 1},
               "features": {"tool_calling": {}}}
    unknown: list[str] = []
    check_recipe(hostile, synced=True, unknown=unknown)
    assert len(unknown) == 1 and "\n" not in unknown[0] and "\x1b" not in unknown[0]
    assert len(unknown[0]) <= len("model.") + 60


# --- each new key: typed, limited, refused with the reason ---------------------------------

def flash() -> dict[str, Any]:
    data: dict[str, Any] = read_yaml(UPSTREAM / "models/zai-org/GLM-5.3-Flash.yaml")
    return data


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d["model"].update(nightly_required="yes"), "model.nightly_required"),
    (lambda d: d["model"].update(min_vllm_version="0.29; rm -rf /"), "model.min_vllm_version"),
    (lambda d: d["variants"]["default"].update(min_vllm_version=["0.30"]),
     "variants.default.min_vllm_version"),
    (lambda d: d.update(hardware_notes={"mi355x": {"title": "x" * 201}}),
     "hardware_notes.mi355x.title"),
    (lambda d: d.update(hardware_notes={"mi355x": {"title": "t", "body": "b" * 2001}}),
     "hardware_notes.mi355x.body"),
    (lambda d: d.update(hardware_notes={"mi355x": "just text"}), "hardware_notes.mi355x"),
    (lambda d: d.update(hardware_notes={"bad key!": {"title": "t"}}), "hardware_notes"),
    (lambda d: d.update(strategy_hardware={"single_node_tep": {"npu": ["unsupported"]}}),
     "strategy_hardware.single_node_tep"),
    # Review of #22, finding 4: strategy names reach messages; ESC never does.
    (lambda d: d["compatible_strategies"].append("evil\x1b[2Jname"), "compatible_strategies"),
    (lambda d: d.update(default_strategy="a b"), "default_strategy"),
    (lambda d: d.update(strategy_overrides={"x\x1b]0;t\x07": {}}), "strategy_overrides"),
    (lambda d: d["features"]["spec_decoding"].update(strategies=["x\x07"]),
     "features.spec_decoding.strategies"),
    (lambda d: d.update(strategy_hardware={"single_node_tep": {"n pu": "unsupported"}}),
     "strategy_hardware.single_node_tep"),
    (lambda d: d.update(kv_offload_support={"offloading_cpu": {"verified": True}}),
     "kv_offload_support.offloading_cpu"),
    (lambda d: d.update(kv_offload_support={"offloading_cpu": "v" * 65}),
     "kv_offload_support.offloading_cpu"),
    (lambda d: d["features"]["spec_decoding"].update(default_mode="eagle"), "default_mode"),
    (lambda d: d["features"]["spec_decoding"]["modes"].update({"--mode": {"args": []}}),
     "features.spec_decoding.modes"),
    (lambda d: d["features"]["spec_decoding"]["modes"]["dflash"].update(
        hardware={"amd": 1}), "features.spec_decoding.modes.dflash.hardware.amd"),
])
def test_a_hostile_value_of_a_new_key_refuses_the_file(change: Any, reason: str) -> None:
    data = flash()
    change(data)
    with pytest.raises(RecipeRefused, match=reason.replace(".", r"\.")):
        check_recipe(data, synced=True)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d.update(hardware_match={"min_gpus": 0}), "hardware_match.min_gpus"),
    (lambda d: d.update(hardware_match={"multi_node": "no"}), "hardware_match.multi_node"),
    (lambda d: d.update(remove_args="--enable-expert-parallel"), "remove_args"),
    (lambda d: d.update(hardware_match={"architecture": "m o e"}),
     "hardware_match.architecture"),
    (lambda d: d.update(companion=["vllm-router"]), "companion"),
    (lambda d: d.update(name="evil\x1b]0;PWNED\x07"), "name"),  # review of #22, finding 4
    (lambda d: d.update(parallel_flag="--x\x1b[2J"), "parallel_flag"),
])
def test_a_hostile_strategy_value_refuses_the_file(change: Any, reason: str) -> None:
    data: dict[str, Any] = read_yaml(UPSTREAM / "strategies/single_node_dpa_tp.yaml")
    change(data)
    with pytest.raises(RecipeRefused, match=reason):
        check_strategy(data)


def test_a_refused_new_file_is_skipped_and_the_rest_serves(tmp_path: Path) -> None:
    folder = upstream_copy(tmp_path)
    path = folder / "models/zai-org/GLM-5.3-Flash.yaml"
    data = yaml.safe_load(path.read_text())
    data["hardware_notes"] = {"mi355x": {"title": "x" * 5000}}
    path.write_text(yaml.safe_dump(data))
    env = env_for(tmp_path)
    result = sync(str(folder), env)
    assert any("GLM-5.3-Flash.yaml" in note and "hardware_notes" in note
               for note in result.notes)
    assert "zai-org/GLM-5.3" in load_book(env).recipes
    assert "zai-org/GLM-5.3-Flash" not in load_book(env).recipes


# --- recipes diff ---------------------------------------------------------------------------

def test_diff_says_a_built_in_variant_is_kept_not_changed_to_nothing(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    sync(str(upstream_copy(tmp_path)), env)
    changes = diff(env)
    kept = {(c.recipe, c.path) for c in changes if c.kind == "kept"}
    assert ("zai-org/GLM-4.5", "variants.air") in kept
    assert ("zai-org/GLM-4.7", "variants.flash") in kept
    assert all(c.synced == recipes.KEPT for c in changes if c.kind == "kept")
    # None of the kept variants' fields shows as changed to an empty value.
    assert not [c for c in changes if c.kind == "changed" and
                c.path.startswith(("variants.air", "variants.flash"))]
    # And they are still served after the sync.
    assert load_book(env).recipe("zai-org/GLM-4.7").variants.get("flash")


# --- what the new keys do ------------------------------------------------------------------

def synced_env(tmp_path: Path, edit: Any = None) -> dict[str, str]:
    folder = upstream_copy(tmp_path)
    if edit is not None:
        path = folder / "models/zai-org/GLM-5.3-Flash.yaml"
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data))
    env = {**env_for(tmp_path), "HF_HUB_OFFLINE": "1"}
    sync(str(folder), env)
    return env


def test_a_variant_min_vllm_version_is_that_checkpoints_floor(tmp_path: Path) -> None:
    from glmkit.errors import UsageError
    from glmkit.knowledge.catalog import resolve_model

    from .helpers import plan_for

    env = synced_env(tmp_path, lambda d: d["variants"]["nvfp4"].update(
        min_vllm_version="0.34.0"))
    assert resolve_model("RedHatAI/GLM-5.3-Flash-NVFP4", env).min_vllm == "0.34.0"
    assert resolve_model("zai-org/GLM-5.3-Flash", env).min_vllm == "0.29.0"
    with pytest.raises(UsageError, match=r"needs vLLM ≥ 0\.34\.0"):
        plan_for(env=env, vendor="cuda", model="RedHatAI/GLM-5.3-Flash-NVFP4", gpu="b200",
                 gpu_count=8, vllm_version="0.33.0")


def test_strategy_hardware_refuses_a_strategy_on_that_gpu_with_the_reason(
        tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path)
    with pytest.raises(UsageError, match=r"marks single_node_tep unsupported on npu"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="ascend_950pr",
                 gpu_count=8, strategy="single_node_tep")
    # The same strategy on a GPU the gate does not name is served.
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8, strategy="single_node_tep")
    assert plan.strategy == "single_node_tep"


def test_strategy_hardware_opts_a_strategy_in_on_one_gpu(tmp_path: Path) -> None:
    from glmkit.knowledge.recipes import load_book
    from glmkit.knowledge.resolver import offered_strategies, target_for

    env = synced_env(tmp_path, lambda d: d["strategy_hardware"].update(
        single_node_dep={"npu": "unsupported", "b200": "supported"},
        multi_node_tp_dp={"blackwell": "supported"}))
    book = load_book(env)
    recipe = book.recipe("zai-org/GLM-5.3-Flash")
    assert "multi_node_tp_dp" in offered_strategies(recipe, target_for(book, "b200", 8))
    assert "multi_node_tp_dp" not in offered_strategies(recipe, target_for(book, "h200", 8))
    assert "single_node_dep" not in offered_strategies(recipe,
                                                       target_for(book, "ascend_950pr", 8))


def test_a_new_strategy_is_refused_with_the_reason_when_its_parts_are_missing(
        tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path, lambda d: d["compatible_strategies"].append(
        "single_node_dpa_tp"))
    with pytest.raises(UsageError, match=r"needs vLLM Router running beside vLLM"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                 gpu_count=8, strategy="single_node_dpa_tp")


def test_a_new_strategy_is_offered_when_its_parts_exist(tmp_path: Path) -> None:
    """The same DPA+TP layout without the router: glmkit has every part, so it serves it,
    with the strategy's own flags, parallel size and removed flags."""
    folder = upstream_copy(tmp_path)
    strategy = folder / "strategies/single_node_dpa_tp.yaml"
    data = yaml.safe_load(strategy.read_text())
    del data["companion"]
    data["vllm_args"] = ["--enable-expert-parallel", "--max-num-seqs", "64"]
    strategy.write_text(yaml.safe_dump(data))
    env = synced_env(tmp_path, lambda d: d["compatible_strategies"].append(
        "single_node_dpa_tp"))
    from .helpers import plan_for

    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8, strategy="single_node_dpa_tp")
    args = list(plan.serve_args)
    assert plan.strategy == "single_node_dpa_tp"
    assert args[args.index("--data-parallel-size") + 1] == "8"
    assert "--enable-expert-parallel" not in args  # remove_args
    assert "--tensor-parallel-size" not in args  # DP 8, TP 1
    assert args[args.index("--max-num-seqs") + 1] == "64"
    # hardware_match: fewer GPUs than min_gpus is refused with the reason.
    from glmkit.errors import UsageError

    with pytest.raises(UsageError, match="needs at least 2 GPUs"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="b300",
                 gpu_count=1, strategy="single_node_dpa_tp")
    data["hardware_match"]["multi_node"] = True
    strategy.write_text(yaml.safe_dump(data))
    env = synced_env(tmp_path, lambda d: None)
    with pytest.raises(UsageError, match="spans several nodes"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                 gpu_count=8, strategy="single_node_dpa_tp")


def test_hardware_notes_and_kv_offload_support_are_shown(tmp_path: Path) -> None:
    from glmkit.knowledge.recipes import load_book
    from glmkit.knowledge.resolver import hardware_note, kv_offload_support, target_for

    env = synced_env(tmp_path, lambda d: d["hardware_notes"]["mi355x"].update(
        body="[link=file:///etc/passwd]x[/link]\nsecond line\x1b[2J"))
    book = load_book(env)
    recipe = book.recipe("zai-org/GLM-5.3-Flash")
    note = hardware_note(recipe, target_for(book, "mi355x", 8))
    assert note is not None and note.startswith("Long-context indexer top-k opt-in: ")
    assert "\n" not in note and "\x1b" not in note and note.endswith("second line?[2J")
    assert hardware_note(recipe, target_for(book, "h100", 8)) is None
    assert kv_offload_support(recipe) == "offloading_cpu: verified, offloading_fs: verified"
    from .helpers import plan_for

    plan = plan_for(env=env, vendor="rocm", model="zai-org/GLM-5.3-Flash", gpu="mi355x",
                    gpu_count=8)
    assert any(n.startswith("hardware note for 8 × MI355X") for n in plan.notes)


# --- the decode bound is for a batch that fits --------------------------------------------

def test_the_decode_bound_is_for_the_largest_batch_the_kv_cache_holds() -> None:
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    # GLM-4.7-Flash on one H100 (81,559 MiB) as vLLM would size it: 216,512 tokens of KV.
    advice = advise(PlanRequest(model="zai-org/GLM-4.7-Flash", gpu="H100", gpu_count=1,
                                batch=32),
                    NO_GPU, {"HF_HUB_OFFLINE": "1", "GLMKIT_HOME": "/nonexistent"})
    rows = dict(advice.rows)
    assert "216,512 tokens" in rows["KV cache"]
    estimate = rows["decode estimate"]
    assert "at batch 24 × 9000 tokens; capped from batch 32: the KV cache holds 216,512 " \
           "tokens" in estimate
    asked = advise(PlanRequest(model="zai-org/GLM-4.7-Flash", gpu="H100", gpu_count=1,
                               batch=4), NO_GPU, {"HF_HUB_OFFLINE": "1"})
    assert "at batch 4 × 9000 tokens (" in dict(asked.rows)["decode estimate"]  # not capped


def test_a_context_past_the_models_longest_is_capped_and_said() -> None:
    """--context 1,000,000 on GLM-4.7-Flash (202,752 at most) was estimated as asked: two
    sequences of a length the server refuses, since the H200's KV cache holds 1.3M."""
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    rows = dict(advise(PlanRequest(model="zai-org/GLM-4.7-Flash", gpu="H200", gpu_count=1,
                                   context=1_000_000), NO_GPU, {"HF_HUB_OFFLINE": "1"}).rows)
    estimate = rows["decode estimate"]
    assert "× 202752 tokens; --context 1,000,000 capped at 202,752, the largest " \
           "--max-model-len the model serves" in estimate
    assert "largest --max-model-len 202752" in rows["KV cache"]
    assert "at 202,752 tokens" in rows["KV cache"]  # concurrency at the served length


@pytest.mark.parametrize(("tokens", "batch", "context", "expected"), [
    (73877, 16, 9000, (8, 9000)), (73877, 8, 9000, (8, 9000)), (5000, 4, 9000, (1, 5000)),
    (0, 16, 9000, (16, 9000)),
])
def test_resident_batch(tokens: int, batch: int, context: int,
                        expected: tuple[int, int]) -> None:
    from glmkit.knowledge.sizing import Fit, resident_batch

    fit = Fit(1, 1, 1.0, 1.0, tokens, 0, True, kv_tokens=tokens)
    got_batch, got_context, why = resident_batch(fit, batch, context)
    assert (got_batch, got_context) == expected
    assert (why is None) == ((got_batch, got_context) == (batch, context))
    assert tokens == 0 or got_batch * got_context <= tokens


# --- speculative decoding modes: --spec-mode NAME -----------------------------------------

def test_spec_mode_picks_a_mode_and_refuses_one_the_gpu_cannot_run(tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path)
    flash = {"env": env, "model": "zai-org/GLM-5.3-Flash", "gpu_count": 8}
    default = plan_for(vendor="cuda", gpu="h200", spec_mode="mtp", **flash)
    assert '{"method":"mtp","num_speculative_tokens":5}' in default.serve_args
    with pytest.raises(UsageError, match=r"Mode 'dflash' of spec_decoding: the recipe marks "
                                         r"it unsupported on amd; choose from mtp"):
        plan_for(vendor="rocm", gpu="mi355x", spec_mode="dflash", **flash)
    # A mode that does not exist is refused, not swapped for the default.
    with pytest.raises(UsageError, match=r"'eagle'.*no such mode \(it has mtp, dflash\)"):
        plan_for(vendor="cuda", gpu="h200", spec_mode="eagle", **flash)


def test_a_synced_mode_that_names_another_repository_is_refused_not_dropped(
        tmp_path: Path) -> None:
    """DFlash2's draft model is another repository: the policy does not take it from a
    synced recipe, so `--spec-mode dflash` says so (and how to pass it) instead of
    starting a server without speculative decoding."""
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path)
    flash = {"env": env, "model": "zai-org/GLM-5.3-Flash", "gpu_count": 8, "vendor": "cuda",
             "gpu": "h200"}
    with pytest.raises(UsageError, match=r"only the user sets it.*pass it after `--`: "
                                         r"--speculative-config '\{\"method\":\"dflash\""):
        plan_for(spec_mode="dflash", **flash)
    config = '{"method":"dflash","model":"incoai/GLM-5.3-Flash-DFlash2",' \
             '"num_speculative_tokens":7}'
    plan = plan_for(spec_mode="dflash", extra_args=("--speculative-config", config), **flash)
    assert config in plan.serve_args


def test_a_built_in_mode_serves_and_plan_lists_the_modes() -> None:
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU, plan_for

    env = {"GLMKIT_HOME": "/nonexistent", "HF_HUB_OFFLINE": "1"}
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.2-FP8", gpu="h200",
                    gpu_count=8, spec_mode="dspark")
    assert any('"method": "dspark"' in a for a in plan.serve_args)
    rows = dict(advise(PlanRequest(model="zai-org/GLM-5.2-FP8", gpu="h200", gpu_count=8),
                       NO_GPU, env).rows)
    assert rows["spec decoding"] == "--spec-mode mtp (default), dspark"
    nvfp4 = dict(advise(PlanRequest(model="nvidia/GLM-5.2-NVFP4", gpu="b200", gpu_count=8),
                        NO_GPU, env).rows)
    assert "dspark (only for the default checkpoint(s))" in nvfp4["spec decoding"]


@pytest.mark.parametrize("hostile", ["x;y", "--mtp", "", "a" * 65, "mtp\nx", "../../etc",
                                     "$(id)", "ｍｔｐ"])
def test_a_hostile_spec_mode_is_one_line_from_every_layer(hostile: str) -> None:
    from glmkit.errors import UsageError
    from glmkit.host.settings import resolve_settings
    from glmkit.policy import admit_name

    with pytest.raises(UsageError, match="is not a name"):
        admit_name(hostile, "--spec-mode")
    for layer in ({"flags": {"spec_mode": hostile}}, {"config": {"spec_mode": hostile}},
                  {"env": {"GLMKIT_SPEC_MODE": hostile}}):
        settings, _ = resolve_settings(layer.get("flags", {}), layer.get("config"),
                                       layer.get("env"))
        from .helpers import plan_for

        if settings.spec_mode:  # an empty value is "not set"
            with pytest.raises(UsageError, match="is not a name"):
                plan_for(vendor="cuda", model="zai-org/GLM-5.2-FP8", gpu="h200", gpu_count=8,
                         spec_mode=settings.spec_mode)


def test_spec_mode_on_a_recipe_without_modes_says_use_mtp() -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    with pytest.raises(UsageError, match="no modes; use --mtp"):
        plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", gpu="h200", gpu_count=8,
                 spec_mode="mtp")


# --- a plan without architecture facts ----------------------------------------------------

def test_plan_without_config_json_plans_from_the_recipe_and_render_agrees(
        tmp_path: Path) -> None:
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU, plan_for

    env = synced_env(tmp_path)  # HF_HUB_OFFLINE: config.json cannot be fetched
    advice = advise(PlanRequest(model="zai-org/GLM-5.3", gpu="h200", gpu_count=8), NO_GPU,
                    env)
    rows = dict(advice.rows)
    assert "planned from the recipe's numbers: no config.json for zai-org/GLM-5.3" in \
        rows["model"]
    assert "vram_minimum_gb 893 GB" in rows["model"]
    assert rows["smallest fit"].startswith("--tensor-parallel-size 8: the recipe's 893 GB "
                                           "fits 8 × 140.4 GiB")
    assert rows["context"].startswith("--max-model-len 65536 (what render serves")
    # 39B active x 1 byte (FP8) / TP 8 over 4.8 TB/s.
    assert "TPOT ≥ 1.02 ms at batch 1" in rows["decode bound"]
    assert any("planned from the recipe's numbers" in a for a in advice.assumptions)
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3", gpu="h200", gpu_count=8)
    assert plan.max_model_len == 65536 and plan.tensor_parallel == 8
    assert any(n.startswith("plan: TP 8 on 8 × H200 (141 GB), --max-model-len 65536, planned "
                            "from the recipe's numbers") for n in plan.notes)


def test_plan_from_the_recipe_says_when_the_node_is_too_small(tmp_path: Path) -> None:
    from glmkit.knowledge.gpu_model import GIB
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    env = synced_env(tmp_path)
    rows = dict(advise(PlanRequest(model="zai-org/GLM-5.3-BF16", gpu="h200", gpu_count=8),
                       NO_GPU, env).rows)
    assert "the recipe's 1786 GB needs more than 8 × 140.4 GiB" in rows["smallest fit"]
    # Review of #22, finding 7: no single-node layout is recommended; the nodes are planned.
    for nodes, verdict in ((None, "fits"), (2, "fits"), (3, "fits")):
        advice = advise(PlanRequest(model="zai-org/GLM-5.3-BF16", gpu="h200", gpu_count=8,
                                    nodes=nodes), NO_GPU, env)
        assert not any("--strategy single_node_" in value for _, value in advice.rows)
        assert advice.multinode is not None and advice.multinode.startswith(
            f"{nodes or 2} nodes × 8 GPUs give {round((nodes or 2) * 8 * 140.4 * GIB / 1e9)} "
            f"GB: the recipe's 1786 GB {verdict}")  # 140.4 GiB: 143,771 MiB per H200
    # A node that holds it still gets its single-node layouts.
    rows = dict(advise(PlanRequest(model="zai-org/GLM-5.3", gpu="h200", gpu_count=8), NO_GPU,
                       env).rows)
    assert rows["for latency"].startswith("--strategy single_node_")


def test_a_config_json_in_the_cache_wins_over_the_recipe_numbers(tmp_path: Path) -> None:
    import json

    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    env = synced_env(tmp_path)
    snapshot = Path(env["HF_HOME"]) / "hub/models--zai-org--GLM-5.3/snapshots/abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({
        "num_hidden_layers": 78, "num_attention_heads": 64, "num_key_value_heads": 64,
        "head_dim": 256, "hidden_size": 6144, "n_routed_experts": 256,
        "num_experts_per_tok": 8, "kv_lora_rank": 512, "qk_rope_head_dim": 64}))
    rows = dict(advise(PlanRequest(model="zai-org/GLM-5.3", gpu="h200", gpu_count=8), NO_GPU,
                       {**env, "HF_HOME": env["HF_HOME"]}).rows)
    assert "78 layers" in rows["model"] and "facts from config.json" in rows["model"]
    # Review of #22, finding 2: render reads the same config.json (as a host fact), so it
    # neither says none could be read nor serves the recipe-number context.
    from .helpers import plan_for

    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3", gpu="h200", gpu_count=8)
    assert not any("no config.json" in n or "download it" in n for n in plan.notes)
    assert any(n.startswith("plan: TP 8 on 8 × H200 (141 GB) (") for n in plan.notes)
    # A config.json with the wrong types is data from the Hub: the recipe's numbers serve.
    (snapshot / "config.json").write_text(json.dumps({"num_hidden_layers": "x" * 9,
                                                      "num_attention_heads": []}))
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3", gpu="h200", gpu_count=8)
    assert plan.max_model_len == 65536
    rows = dict(advise(PlanRequest(model="zai-org/GLM-5.3", gpu="h200", gpu_count=8), NO_GPU,
                       env).rows)
    assert "planned from the recipe's numbers" in rows["model"]


# --- moving image tags --------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "moving"), [
    ("vllm/vllm-openai:nightly", "nightly"), ("vllm/vllm-openai-rocm:nightly", "nightly"),
    ("vllm/vllm-openai:cu130-nightly", "cu130-nightly"), ("vllm/vllm-openai", "latest"),
    ("vllm/vllm-openai:latest", "latest"), ("localhost:5000/vllm:nightly", "nightly"),
    ("vllm/vllm-openai:v0.28.0", None),
    ("vllm/vllm-openai-rocm:nightly-4c626633159887b0f2c962058c17c78f1434556d", None),
    ("vllm/vllm-openai:nightly@sha256:" + "a" * 64, None), ("localhost:5000/vllm", "latest"),
])
def test_moving_tags_are_told_from_pins(ref: str, moving: str | None) -> None:
    from glmkit.knowledge.images import moving_tag

    assert moving_tag(ref) == moving


def test_a_recipes_nightly_image_is_a_moving_tag_not_a_pin(tmp_path: Path) -> None:
    from .helpers import plan_for

    env = synced_env(tmp_path)
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8)
    assert plan.image.ref == "vllm/vllm-openai:nightly" and plan.image.moving == "nightly"
    assert "pinned" not in plan.image.why and "moving tag `nightly`, not a pin" in \
        plan.image.why
    assert any(n.startswith("warning: vllm/vllm-openai:nightly is a moving tag (nightly)")
               and "--image vllm/vllm-openai@sha256:" in n for n in plan.notes)
    # A recipe's release pin stays a pin.
    glm53 = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3", gpu="h200",
                     gpu_count=8)
    assert glm53.image.moving is None and "pinned by the GLM-5.3 recipe" in glm53.image.why


def test_nightly_required_without_a_nightly_image_says_so(tmp_path: Path) -> None:
    from .helpers import plan_for

    env = synced_env(tmp_path, lambda d: d["model"].pop("docker_image"))
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8)
    assert "nightly_required" in plan.image.why
    assert "--image vllm/vllm-openai:nightly" in plan.image.why


def test_image_takes_a_digest_pin_through_the_policy(tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path)
    pin = "vllm/vllm-openai@sha256:" + "0123456789abcdef" * 4
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8, image=pin, vllm_version="0.33.0")
    assert plan.image.ref == pin and plan.image.moving is None
    assert plan.image.why == "--image, pinned by digest"
    assert not any("moving tag" in n for n in plan.notes)
    for bad in ("vllm/vllm-openai@sha256:" + "A" * 64, "vllm/vllm-openai@sha256:abc",
                "vllm/vllm-openai@sha512:" + "0" * 128, "vllm/vllm-openai@sha256:" + "0" * 64
                + ";id", "vllm/vllm-openai:nightly@sha256:" + "g" * 64):
        with pytest.raises(UsageError, match="is not an image reference"):
            plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                     gpu_count=8, image=bad)


def test_status_shows_the_digest_a_container_runs() -> None:
    from docker.errors import NotFound

    from glmkit.run.engine import container_digest

    class Image:
        def __init__(self, attrs: dict[str, Any]) -> None:
            self.attrs = attrs

    class Container:
        def __init__(self, image: Any) -> None:
            self._image = image

        @property
        def image(self) -> Any:
            if self._image is None:
                raise NotFound("gone")
            return self._image

    digest = "vllm/vllm-openai@sha256:" + "ab" * 32
    assert container_digest(Container(Image({"RepoDigests": [digest], "Id": "sha256:1"}))) \
        == digest
    assert container_digest(Container(Image({"RepoDigests": [], "Id": "sha256:1"}))) == \
        "sha256:1"  # built here (the CPU image): its local id
    assert container_digest(Container(None)) == "-"


def test_a_run_records_the_digest_its_container_ran(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from glmkit.measure import results
    from glmkit.measure.results import HardwareMeta, start_run
    from glmkit.measure.workloads import WORKLOADS, sweep_points
    from glmkit.run.server import RunningServer

    from .helpers import gpus

    ran = "vllm/vllm-openai@sha256:" + "cd" * 32
    monkeypatch.setattr(results, "container_image_digest",
                        lambda container: ran if container == "sch-vllm-1" else None)
    monkeypatch.setattr(results, "image_digest", lambda ref: "what the tag names now")
    monkeypatch.setattr(results, "_git_commit", lambda root: None)
    target = RunningServer(container="sch-vllm-1", served_model="zai-org/GLM-5.3-Flash",
                           model_ref="zai-org/GLM-5.3-Flash", max_model_len=65536,
                           vendor="cuda", image="vllm/vllm-openai:nightly",
                           serve_args=("m",), base_url="http://127.0.0.1:8400")
    run = start_run(tmp_path, target, WORKLOADS["balanced"], "concurrency",
                    sweep_points([1], "concurrency"), HardwareMeta.of(gpus("cuda", 1)),
                    results.read_run_facts(target, tmp_path))
    assert json.loads((run.path / "meta.json").read_text())["image_digest"] == ran


def test_a_synced_note_and_unknown_key_print_as_text_not_markup(tmp_path: Path) -> None:
    """hardware_notes and unknown key names come from the internet: `invoke plan` and
    `recipes sync` print them as written, never as rich markup (a `[/x]` would crash the
    print, a `[link=…]` would become a link)."""
    import io

    from rich.console import Console

    from glmkit.cli.views import advice_table, print_notes
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    hostile = "[/x][link=https://evil.example]click[/link][bold]"
    folder = upstream_copy(tmp_path)
    path = folder / "models/zai-org/GLM-5.3-Flash.yaml"
    data = yaml.safe_load(path.read_text())
    data["hardware_notes"]["mi355x"]["body"] = hostile
    data["model"][hostile] = 1
    path.write_text(yaml.safe_dump(data))
    env = {**env_for(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = sync(str(folder), env)
    out = Console(file=io.StringIO(), width=400, color_system=None)
    print_notes(out, result.unknown_notes(), "unknown keys")
    advice = advise(PlanRequest(model="zai-org/GLM-5.3-Flash", gpu="mi355x", gpu_count=8),
                    NO_GPU, env)
    out.print(advice_table(advice))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert text.count(hostile) == 2  # the note in the plan, the key in the sync's notes


def test_pull_and_up_say_which_digest_a_moving_tag_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from glmkit.run import image_build

    env = synced_env(tmp_path)
    digest = "vllm/vllm-openai@sha256:" + "ef" * 32
    pulled: list[str] = []
    monkeypatch.setattr(image_build, "pull_image", lambda ref, console: pulled.append(ref))
    monkeypatch.setattr(image_build, "image_digest", lambda ref: digest)
    console = Console(file=io.StringIO(), width=300, color_system=None)
    said = image_build.pull_for("cuda", "zai-org/GLM-5.3-Flash", None, False, console, env)
    assert pulled == ["vllm/vllm-openai:nightly"]
    assert said == f"pulled vllm/vllm-openai:nightly (nightly, a moving tag): {digest}"
    # A release pin says no more than before.
    assert image_build.pull_for("cuda", "zai-org/GLM-5.3", None, False, console,
                                env) == "pulled vllm/vllm-openai:v0.28.0"

    from .helpers import plan_for

    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8)
    for present, earlier in ((False, False), (True, True)):
        monkeypatch.setattr(image_build, "image_present", lambda ref, p=present: p)
        out = Console(file=io.StringIO(), width=300, color_system=None)
        image_build.ensure_images(plan.image, None, plan.facts.tiny, tmp_path, out, env)
        text = out.file.getvalue()  # type: ignore[attr-defined]
        assert f"vllm/vllm-openai:nightly (nightly, a moving tag) is {digest} here" in text
        assert ("pulled earlier" in text) is earlier


def strategy_env(tmp_path: Path, name: str, strategy: dict[str, Any],
                 edit: Any = None) -> dict[str, str]:
    """A synced copy with one more strategy file, offered by GLM-5.3-Flash."""
    folder = upstream_copy(tmp_path)
    (folder / f"strategies/{name}.yaml").write_text(yaml.safe_dump(strategy))

    def offer(data: dict[str, Any]) -> None:
        data["compatible_strategies"].append(name)
        if edit is not None:
            edit(data)
    return synced_env(tmp_path, offer)


MY_DP = {"name": "my_dp", "deploy_type": "single_node", "parallel_flag": "--data-parallel-size"}


def test_remove_args_leaves_the_strategys_parallel_flag(tmp_path: Path) -> None:
    """Review of #22, finding 1: the last removed flag was taken for the parallel flag."""
    from .helpers import plan_for

    env = strategy_env(tmp_path, "my_dp", {**MY_DP,
                                           "remove_args": ["--enable-auto-tool-choice"]})
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h100",
                    gpu_count=8, strategy="my_dp")
    args = list(plan.serve_args)
    assert args[args.index("--data-parallel-size") + 1] == "8"
    assert "--tensor-parallel-size" not in args
    assert "--enable-auto-tool-choice" not in args


def test_a_synced_strategy_name_never_reaches_the_terminal_with_esc(tmp_path: Path) -> None:
    """Review of #22, finding 4: the strategy file is skipped with a one-line note, and the
    known-strategy list and the "it offers" list show no control character."""
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = strategy_env(tmp_path, "evil", {**MY_DP, "name": "evil\x1b]0;PWNED\x07"})
    book = load_book(env)
    assert not any("\x1b" in n for n in book.strategies)
    assert any("strategies/evil.yaml" in n and "name" in n for n in book.notes)
    assert not any("\x1b" in n or "\x07" in n for n in book.notes)
    with pytest.raises(UsageError) as err:
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h100",
                 gpu_count=8, strategy="nope")
    assert "\x1b" not in str(err.value)


@pytest.mark.parametrize("ask", [{"spec_mode": "mtp"}, {"mtp": True}])
def test_a_strategy_that_removes_speculative_decoding_refuses_a_requested_mode(
        tmp_path: Path, ask: dict[str, Any]) -> None:
    """Review of #22, finding 3: --spec-mode/--mtp is served or refused, never dropped."""
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = strategy_env(tmp_path, "my_dp", {**MY_DP, "remove_args": ["--speculative-config"]})
    with pytest.raises(UsageError, match=r"strategy my_dp removes --speculative-config"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h100",
                 gpu_count=8, strategy="my_dp", **ask)
    # Without the ask the strategy serves, without speculative decoding.
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h100",
                    gpu_count=8, strategy="my_dp")
    assert not any(a.startswith("--speculative-config") for a in plan.serve_args)


def test_a_feature_allow_list_refuses_a_requested_mode(tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path, lambda d: d["features"]["spec_decoding"].update(
        strategies=["single_node_tp"]))
    with pytest.raises(UsageError, match=r"speculative decoding only with single_node_tp"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                 gpu_count=8, strategy="single_node_tep", spec_mode="mtp")
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8, strategy="single_node_tp", spec_mode="mtp")
    assert any(a.startswith("--speculative-config") for a in plan.serve_args)


# --- review of #22, finding 5: nightly and pre-release floors -------------------------------

@pytest.mark.parametrize(("version", "floor", "expected"), [
    ("0.29.1rc1", "0.29.1", False), ("v0.29.1rc1", "0.29.10", False),
    ("0.29.1", "0.29.1rc1", True), ("0.29.10", "0.29.9", True), ("0.33.0", "nightly", False),
    ("99.0.0", "nightly", False), ("nightly", "nightly", True), ("nightly", "0.34.0", True),
    ("0.33.0", "0.33", True), ("0.33.0", "0.34.0", False),
])
def test_at_least_orders_releases_pre_releases_and_nightly(version: str, floor: str,
                                                           expected: bool) -> None:
    from glmkit.knowledge.images import at_least

    assert at_least(version, floor) is expected


def test_a_nightly_floor_refuses_a_release_image(tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    def nightly_floor(data: dict[str, Any]) -> None:
        data["variants"]["nvfp4"].update(min_vllm_version="nightly")
        data["variants"]["nvfp4"].pop("docker_image", None)
        data["model"].pop("docker_image", None)

    env = synced_env(tmp_path, nightly_floor)
    for release in ({"vllm_version": "0.33.0"}, {"image": "vllm/vllm-openai:v0.33.0"}, {}):
        with pytest.raises(UsageError, match=r"needs a vLLM nightly build"):
            plan_for(env=env, vendor="cuda", model="RedHatAI/GLM-5.3-Flash-NVFP4", gpu="b200",
                     gpu_count=8, **release)
    for nightly in ("vllm/vllm-openai:nightly", "vllm/vllm-openai@sha256:" + "a" * 64,
                    "vllm/vllm-openai:nightly-4c626633159887b0f2c962058c17c78f1434556d"):
        plan = plan_for(env=env, vendor="cuda", model="RedHatAI/GLM-5.3-Flash-NVFP4",
                        gpu="b200", gpu_count=8, image=nightly)
        assert plan.image.ref == nightly


def test_a_release_candidate_tag_is_below_its_release(tmp_path: Path) -> None:
    from glmkit.errors import UsageError

    from .helpers import plan_for

    env = synced_env(tmp_path, lambda d: d["variants"]["nvfp4"].update(
        min_vllm_version="0.34.0"))
    with pytest.raises(UsageError, match=r"needs vLLM ≥ 0\.34\.0.*has 0\.34\.0rc1"):
        plan_for(env=env, vendor="cuda", model="RedHatAI/GLM-5.3-Flash-NVFP4", gpu="b200",
                 gpu_count=8, image="vllm/vllm-openai:v0.34.0rc1")


def test_no_single_node_strategy_on_a_gpu_is_refused_not_served_multi_node(
        tmp_path: Path) -> None:
    """Review of #22, finding 6: the default fell back to a multi-node strategy."""
    from glmkit.errors import UsageError

    from .helpers import plan_for

    def gate_every_single_node(data: dict[str, Any]) -> None:
        for name in data["compatible_strategies"]:
            if name.startswith("single_node_"):
                data["strategy_hardware"][name] = {"h100": "unsupported"}

    env = synced_env(tmp_path, gate_every_single_node)
    with pytest.raises(UsageError, match=r"offers no single-node strategy on 8 × H100.*"
                                         r"strategy_hardware marks single_node_tp"):
        plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h100",
                 gpu_count=8)
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash", gpu="h200",
                    gpu_count=8)
    assert plan.strategy.startswith("single_node_")


@pytest.mark.parametrize(("image", "pin"), [
    ("localhost:5000/vllm", "localhost:5000/vllm@sha256:"),
    ("localhost:5000/vllm:nightly", "localhost:5000/vllm@sha256:"),
    ("vllm/vllm-openai:nightly", "vllm/vllm-openai@sha256:"),
])
def test_the_pin_suggestion_keeps_a_registry_port(image: str, pin: str) -> None:
    """Review of #22, finding 10: `localhost:5000/vllm` was told to pin `localhost@…`."""
    from .helpers import plan_for

    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.7-Flash", gpu="h100", gpu_count=1,
                    image=image)
    warning = next(n for n in plan.notes if n.startswith("warning:"))
    assert f"--image {pin}" in warning
    from glmkit.policy import image_repository

    assert image_repository(image + "@sha256:" + "a" * 64) == pin.removesuffix("@sha256:")


@pytest.mark.parametrize("strategy", ["multi_node_tp", "multi_node_tep", "multi_node_dep",
                                      "multi_node_tp_pp", "single_node_dep", "nope",
                                      "single_node_dpa_tp"])
@pytest.mark.parametrize("nodes", [None, 2])
def test_plan_and_up_check_a_strategy_the_same_way(tmp_path: Path, strategy: str,
                                                   nodes: int | None) -> None:
    """Review of #22, finding 9: plan and up refuse or accept each --strategy alike, with
    the same reason, and plan lays out what each node of `up` runs."""
    from glmkit.errors import UsageError
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU, plan_for

    env = synced_env(tmp_path, lambda d: d["strategy_hardware"].update(
        multi_node_tep={"h100": "unsupported"}))

    def outcome(run: Any) -> str:
        try:
            return str(run())
        except UsageError as err:
            return f"refused: {err}"

    up = outcome(lambda: plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-Flash",
                                  gpu="h100", gpu_count=8, strategy=strategy,
                                  nodes=str(nodes) if nodes else None).strategy)
    plan = outcome(lambda: dict(advise(PlanRequest(
        model="zai-org/GLM-5.3-Flash", vendor="cuda", gpu="h100", gpu_count=8,
        strategy=strategy, nodes=nodes), NO_GPU, env).rows)["recipe layout"])
    if up.startswith("refused: --strategy") or up.startswith("refused: Unknown"):
        assert plan == up
    else:
        assert not plan.startswith("refused: --strategy"), plan
        if not up.startswith("refused"):
            assert plan.startswith(f"{up}: ")


def test_plan_shows_a_usable_new_strategy_as_also_offered(tmp_path: Path) -> None:
    """Review of #22, finding 11: only refused new strategies were shown."""
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    env = strategy_env(tmp_path, "my_dp", MY_DP)
    rows = dict(advise(PlanRequest(model="zai-org/GLM-5.3-Flash", vendor="cuda", gpu="h200",
                                   gpu_count=8), NO_GPU, env).rows)
    assert rows["also offered"] == "--strategy my_dp"
    assert "my_dp" not in rows.get("not offered", "")


def test_invoke_plan_reads_the_hf_cache_up_reads(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # #29: `invoke plan` read $HF_HOME only, so a cache set with hf_cache (invoke.yaml,
    # GLMKIT_HF_CACHE), where `up` found the model's config.json, was never looked in.
    import json

    from .test_cli_trust import run_task

    env = synced_env(tmp_path)
    cache = tmp_path / "elsewhere"
    snapshot = cache / "hub/models--zai-org--GLM-5.3/snapshots/abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({
        "num_hidden_layers": 77, "num_attention_heads": 64, "num_key_value_heads": 64,
        "head_dim": 256, "hidden_size": 6144, "n_routed_experts": 256,
        "num_experts_per_tok": 8, "kv_lora_rank": 512, "qk_rope_head_dim": 64}))
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--model",
                              "zai-org/GLM-5.3", "--gpu", "h200", "--gpu-count", "8",
                              env={**env, "GLMKIT_HF_CACHE": str(cache)})
    assert code == 0, err
    assert "77 layers" in out and "facts from config.json" in out
