"""Parity of glmkit's rendered commands with the recipe site's own command synthesizer.

For every GLM chat recipe of a vllm-project/recipes checkout × its variants × H100, H200,
B200, MI300X, MI355X × the single-node strategies it offers × MTP off and on, the flags
and environment the synthesizer emits (run by Node) must all be in what glmkit renders,
except the deviations glmkit makes on purpose (README, "Where glmkit departs from the
recipes"). Cases glmkit refuses must be refused for a listed reason.

    python scripts/recipe_parity.py [RECIPES_DIR]     # default ../shared/recipes
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from glmkit.errors import UsageError  # noqa: E402
from glmkit.host.facts import read_host_facts  # noqa: E402
from glmkit.host.hardware import Hardware  # noqa: E402
from glmkit.host.settings import Settings  # noqa: E402
from glmkit.knowledge.recipes import (  # noqa: E402
    SINGLE_NODE_STRATEGIES,
    is_chat_recipe,
    load_book,
    sync,
)
from glmkit.plan.serve import build_plan  # noqa: E402

HARDWARE = ("h100", "h200", "b200", "mi300x", "mi355x")
# Flags glmkit replaces on purpose: the whole-container media path becomes a mounted folder;
# a synced recipe's --trust-remote-code waits for the user's own `-- --trust-remote-code`
# (glmkit.policy: synced recipes are data, and code runs only when the user asks).
DROPPED_FLAGS = {"--allowed-local-media-path", "--trust-remote-code"}
# Why glmkit may refuse a case the synthesizer renders anyway.
REFUSALS = {"needs NVIDIA blackwell": "precision the GPU cannot run",
            "runs only on": "checkpoint limited to other GPUs",
            "needs about": "larger than one node (vram_minimum_gb)"}

@dataclass(frozen=True)
class Case:
    recipe: str
    variant: str
    hardware: str
    strategy: str
    mtp: bool


@dataclass
class Outcome:
    case: Case
    status: str  # match, refused, mismatch
    detail: str = ""


def node_script(recipes_dir: Path) -> str:
    module = (recipes_dir / "src/lib/command-synthesis.js").resolve().as_uri()
    return f"""
import {{ resolveCommand }} from '{module}';
let text = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) text += chunk;
const input = JSON.parse(text);
const out = input.cases.map((c) => {{
  const recipe = input.recipes[c.recipe];
  const r = resolveCommand(recipe, c.variant, c.strategy, c.hardware, c.features,
                           input.strategies, input.taxonomy, [], 1, null, c.modes);
  return {{ argv: r.argv, env: r.env }};
}});
process.stdout.write(JSON.stringify(out));
"""


def load_inputs(recipes_dir: Path) -> tuple[dict[str, dict], dict[str, dict], dict]:
    recipes = {}
    for path in sorted((recipes_dir / "models" / "zai-org").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if is_chat_recipe(data):
            recipes[path.stem] = json.loads(json.dumps(data, default=str))
    strategies = {}
    for path in sorted((recipes_dir / "strategies").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        strategies[data["name"]] = data
    taxonomy = json.loads(json.dumps(yaml.safe_load((recipes_dir / "taxonomy.yaml").read_text()),
                                     default=str))
    return recipes, strategies, taxonomy


def cases_for(recipes: dict[str, dict]) -> list[Case]:
    cases = []
    for name, recipe in recipes.items():
        strategies = [s for s in recipe.get("compatible_strategies", [])
                      if s in SINGLE_NODE_STRATEGIES]
        mtp_options = (False, True) if "spec_decoding" in recipe.get("features", {}) else (False,)
        for variant in recipe.get("variants", {}):
            for hw in HARDWARE:
                for strategy in strategies:
                    for mtp in mtp_options:
                        cases.append(Case(name, variant, hw, strategy, mtp))
    return cases


def oracle(recipes_dir: Path, recipes: dict, strategies: dict, taxonomy: dict,
           cases: Sequence[Case]) -> list[dict]:
    payload = {"recipes": recipes, "strategies": strategies, "taxonomy": taxonomy, "cases": []}
    for case in cases:
        recipe = recipes[case.recipe]
        features = [f for f in recipe.get("features", {})
                    if f not in recipe.get("opt_in_features", [])]
        if case.mtp:
            features.append("spec_decoding")
        modes = {"spec_decoding": "mtp"} if case.mtp else {}
        payload["cases"].append({**case.__dict__, "features": features, "modes": modes})
    done = subprocess.run(["node", "--input-type=module", "-e", node_script(recipes_dir)],
                          input=json.dumps(payload), capture_output=True, text=True, check=True)
    result: list[dict] = json.loads(done.stdout)
    return result


def pairs(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        if argv[i].startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.append((argv[i], argv[i + 1]))
            i += 2
        else:
            out.append((argv[i], None))
            i += 1
    return out


def glmkit_render(case: Case, model_id: str, env: dict[str, str]) -> tuple[list[str], dict]:
    vendor = "rocm" if case.hardware.startswith("mi") else "cuda"
    settings = Settings(vendor=vendor, model=model_id, gpu=case.hardware, gpu_count=8,
                        strategy=case.strategy, mtp=case.mtp)
    plan = build_plan(settings, read_host_facts(settings, env, Hardware(vendor="cpu")),
                      load_book(env))
    return list(plan.serve_args), plan.environment


def compare(recipes_dir: Path) -> list[Outcome]:
    recipes, strategies, taxonomy = load_inputs(recipes_dir)
    cases = cases_for(recipes)
    expected = oracle(recipes_dir, recipes, strategies, taxonomy, cases)
    outcomes = []
    with tempfile.TemporaryDirectory() as home:
        env = {"GLMKIT_HOME": home, "HF_HOME": f"{home}/hf"}
        sync(str(recipes_dir), env)  # glmkit reads the same files the oracle does
        for case, want in zip(cases, expected, strict=True):
            model_id = want["argv"][2]
            try:
                args, environment = glmkit_render(case, model_id, env)
            except UsageError as err:
                reason = next((why for key, why in REFUSALS.items() if key in str(err)), None)
                status = "refused" if reason else "mismatch"
                outcomes.append(Outcome(case, status, reason or f"refused: {err}"))
                continue
            got = set(pairs(args))
            missing = [f"{flag} {value or ''}".strip() for flag, value in pairs(want["argv"][3:])
                       if flag not in DROPPED_FLAGS and (flag, value) not in got]
            missing += [f"{k}={v}" for k, v in want["env"].items() if environment.get(k) != v]
            outcomes.append(Outcome(case, "mismatch" if missing else "match",
                                    "missing " + ", ".join(missing) if missing else ""))
    return outcomes


def main(argv: Sequence[str]) -> int:
    recipes_dir = Path(argv[1] if len(argv) > 1 else ROOT.parent / "shared" / "recipes")
    outcomes = compare(recipes_dir)
    counts = Counter(o.status for o in outcomes)
    reasons = Counter(o.detail for o in outcomes if o.status == "refused")
    print(f"{len(outcomes)} cases: {counts['match']} match, {counts['refused']} refused on "
          f"purpose, {counts['mismatch']} mismatch")
    for reason, count in reasons.most_common():
        print(f"  refused, {reason}: {count}")
    for o in outcomes:
        if o.status == "mismatch":
            print(f"MISMATCH {o.case}: {o.detail}")
    return 1 if counts["mismatch"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
