"""Every command glmkit renders, through the argument parser of a real vLLM.

Renders each catalog checkpoint × cuda/rocm × the single-node strategies its recipe
offers × MTP off/on (on 8 × B300 and 8 × MI355X, where every checkpoint fits), then
parses every command with `vllm serve`'s own parser inside the CPU image, in one
container run with no network. A flag vLLM does not know, a bad choice or a malformed
value fails here instead of at a server's start.

    python scripts/check_flags.py [IMAGE]     # default: glmkit's CPU image
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from glmkit.errors import UsageError  # noqa: E402
from glmkit.host.facts import read_host_facts  # noqa: E402
from glmkit.host.hardware import Hardware  # noqa: E402
from glmkit.host.settings import Settings  # noqa: E402
from glmkit.knowledge.catalog import CATALOG  # noqa: E402
from glmkit.knowledge.images import CPU_IMAGE  # noqa: E402
from glmkit.knowledge.recipes import SINGLE_NODE_STRATEGIES, load_book  # noqa: E402
from glmkit.plan.serve import build_plan  # noqa: E402

NODES = {"cuda": "b300", "rocm": "mi355x"}

# Runs inside the image: parse each argv as `vllm serve` would, report what it rejects.
PARSE = r"""
import contextlib, io, json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
cases = json.load(sys.stdin)
out = {}
for key, argv in cases.items():
    parser = FlexibleArgumentParser(prog="vllm serve")
    parser.add_argument("model_tag", nargs="?")
    parser = make_arg_parser(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv)
        out[key] = None
    except SystemExit:
        out[key] = err.getvalue().strip().splitlines()[-1] if err.getvalue() else "rejected"
print("RESULT " + json.dumps(out))
"""


def rendered() -> tuple[dict[str, list[str]], int]:
    """{case name: serve argv} for every case glmkit renders, and how many it refused."""
    cases: dict[str, list[str]] = {}
    refused = 0
    env = {"GLMKIT_HOME": "/tmp/glmkit-flags", "HF_HOME": "/tmp/glmkit-flags/hf"}
    book = load_book(env)
    for model_id, spec in CATALOG.items():
        if spec.recipe is None or spec.local_dir:
            continue
        strategies = [s for s in spec.recipe.compatible_strategies if s in SINGLE_NODE_STRATEGIES]
        for vendor, gpu in NODES.items():
            for strategy in strategies:
                for mtp in (False, True) if spec.has_mtp else (False,):
                    settings = Settings(vendor=vendor, model=model_id, gpu=gpu, gpu_count=8,
                                        strategy=strategy, mtp=mtp)
                    try:
                        facts = read_host_facts(settings, env, Hardware(vendor="cpu"))
                        plan = build_plan(settings, facts, book)
                    except UsageError:
                        refused += 1  # e.g. NVFP4 on AMD: nothing to render
                        continue
                    name = f"{model_id} {vendor} {strategy}" + (" mtp" if mtp else "")
                    cases[name] = list(plan.serve_args)
    cases.update(pd_cases(env, book))
    return cases, refused


# pd_cluster: each pool's command, on one node where the model fits twice and on two
# nodes (GLM-5.2-FP8 on H200 needs a node per pool), simulated and real.
PD_CASES = [("zai-org/GLM-5.2-FP8", "cuda", "h200", "2"),
            ("zai-org/GLM-5.2-FP8", "cuda", "h200", "head=ssh://10.0.0.1,w1=ssh://10.0.0.2"),
            ("zai-org/GLM-5.2-FP8", "cuda", "b300", None),
            ("zai-org/GLM-5.2-FP8", "rocm", "mi355x", None),
            ("zai-org/GLM-4.5-Air-FP8", "cuda", "h100", None)]


def pd_cases(env: dict[str, str], book: Any) -> dict[str, list[str]]:
    from glmkit.plan.pd import plan_pd

    cases: dict[str, list[str]] = {}
    for model_id, vendor, gpu, nodes in PD_CASES:
        settings = Settings(vendor=vendor, model=model_id, gpu=gpu, gpu_count=8,
                            strategy="pd_cluster", nodes=nodes)
        plan = plan_pd(settings, read_host_facts(settings, env, Hardware(vendor="cpu")), book)
        for pool in plan.pools:
            cases[f"{model_id} {vendor} {gpu} pd_cluster nodes={nodes} {pool.service}"] = \
                list(pool.args)
    return cases


def check(image: str = CPU_IMAGE.ref, extra: dict[str, list[str]] | None = None
          ) -> tuple[dict[str, str | None], int]:
    """Parse every rendered command (and `extra` ones) in `image`: {case: None or error}."""
    cases, refused = rendered()
    cases.update(extra or {})
    done = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "python3", image,
         "-c", PARSE], input=json.dumps(cases), capture_output=True, text=True, check=False,
        timeout=600)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the parser run failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, str | None] = json.loads(line.removeprefix("RESULT "))
    return result, refused


def main(argv: Sequence[str]) -> int:
    results, refused = check(argv[1] if len(argv) > 1 else CPU_IMAGE.ref)
    rejected = {k: v for k, v in results.items() if v}
    print(f"{len(results)} rendered commands parsed by vLLM's own parser: "
          f"{len(results) - len(rejected)} accepted, {len(rejected)} rejected "
          f"({refused} cases refused by glmkit before rendering)")
    for name, message in rejected.items():
        print(f"REJECTED {name}: {message}")
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
