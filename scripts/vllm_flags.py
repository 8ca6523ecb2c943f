"""Write src/glmkit/data/vllm-serve-options.json from the image's own `vllm serve` parser.

glmkit's input policy (glmkit.policy) accepts only exact option names that this vLLM
knows, so its table must come from vLLM itself. Run it after changing the CPU image's
vLLM version; tests/integration/test_policy_image.py fails while the file is stale.

    python scripts/vllm_flags.py [IMAGE]          # write the file
    python scripts/vllm_flags.py [IMAGE] --check  # exit 1 if the file differs
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from glmkit.knowledge.images import CPU_IMAGE  # noqa: E402

OUT = ROOT / "src" / "glmkit" / "data" / "vllm-serve-options.json"

# Runs inside the image: every option string of `vllm serve` with the words it takes.
DUMP = r"""
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
from vllm import __version__
parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
options = {}
for action in parser._actions:
    strings = [s for s in action.option_strings if s not in ("-h", "--help")]
    if not strings:
        continue
    nargs = action.nargs
    if nargs is None:
        nargs = 0 if type(action).__name__ in (
            "_StoreTrueAction", "_StoreFalseAction", "_StoreConstAction", "_CountAction",
            "_VersionAction") else 1
    longs = [s for s in strings if s.startswith("--")]
    for spelling in strings:
        # A long spelling is its own name (--no-x is not --x); a short one means the first
        # long one (-tp → --tensor-parallel-size).
        name = spelling if spelling.startswith("--") else (longs[0] if longs else spelling)
        options[spelling] = {"name": name, "nargs": str(nargs), "dest": action.dest}
print("RESULT " + json.dumps({"vllm_version": __version__.split("+")[0],
                              "options": dict(sorted(options.items()))}))
"""


def dump(image: str) -> dict[str, Any]:
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image,
         "-c", DUMP], capture_output=True, text=True, check=False, timeout=600)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the parser dump failed ({done.returncode}): {done.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return data


def text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--check"]
    data = dump(args[0] if args else CPU_IMAGE.ref)
    if "--check" in argv:
        same = OUT.read_text() == text(data)
        print(f"{OUT.name}: {'current' if same else 'stale: run scripts/vllm_flags.py'}")
        return 0 if same else 1
    OUT.write_text(text(data))
    print(f"wrote {OUT} ({len(data['options'])} option spellings, vLLM {data['vllm_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
