"""How long `invoke eval --limit N` takes against a running server, on real GSM8K, where
the Hub cannot be reached (issue #34 asks the time of `--limit 200` on CPU).

GSM8K's questions come from OpenAI's own repository (github.com/openai/grade-school-math,
grade_school_math/data/{train,test}.jsonl: the 7,473 and 1,319 problems openai/gsm8k's
`main` parquet files hold). They are written in that layout, served by the fake Hub of the
tests (tests/fakehub.py), fetched by glmkit's own `download_gsm8k` into a scratch HF cache,
and then `invoke eval --dataset gsm8k --limit N` runs as a user types it, with HF_HOME on
that cache, timed from the outside.

    python scripts/time_eval.py --gsm8k PATH/grade_school_math/data --project glmkit \
        [--limit 200] [--protocol completions-5shot]

Prints the command's wall time and its one-line summary; the run itself lands in the
results store as every eval does. The user's HF cache is not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fakehub: the Hub the tests download from
sys.path.insert(0, str(ROOT / "src"))


def write_layout(source: Path, repo: Path) -> tuple[int, int]:
    """openai/gsm8k's `main` layout from the upstream jsonl files: (train, test) rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (repo / "main").mkdir(parents=True, exist_ok=True)
    counts = []
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (source / f"{split}.jsonl").read_text(
            encoding="utf-8").splitlines() if line.strip()]
        table = pa.table({"question": [r["question"] for r in rows],
                          "answer": [r["answer"] for r in rows]})
        pq.write_table(table, repo / "main" / f"{split}-00000-of-00001.parquet")
        counts.append(len(rows))
    (repo / "README.md").write_text("# gsm8k from openai/grade-school-math\n")
    return counts[0], counts[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", required=True, type=Path,
                        help="grade_school_math/data of openai/grade-school-math")
    parser.add_argument("--project", default="glmkit")
    parser.add_argument("--limit", default="200")
    parser.add_argument("--protocol", default="completions-5shot")
    args = parser.parse_args()

    from glmkit.measure.eval_data import download_gsm8k
    from tests.fakehub import Hub, serve

    with tempfile.TemporaryDirectory(prefix="time-eval-") as scratch:
        repo, hf_home = Path(scratch) / "repo", Path(scratch) / "hf"
        train, test = write_layout(args.gsm8k, repo)
        with serve(Hub(repos={}, datasets={"openai/gsm8k": repo})) as endpoint:
            print(download_gsm8k(None, hf_home, {}, endpoint=endpoint))
        # GLMKIT_HF_CACHE too: it (or invoke.yaml's hf_cache) would win over HF_HOME.
        env = {**os.environ, "HF_HOME": str(hf_home), "GLMKIT_HF_CACHE": str(hf_home),
               "HF_HUB_OFFLINE": "1"}
        # --flag=value: no value given here can be read as another option.
        argv = [str(Path(sys.executable).with_name("invoke")), "eval",
                f"--project={args.project}", "--dataset=gsm8k", f"--limit={args.limit}",
                f"--protocol={args.protocol}"]
        started = time.monotonic()
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                              check=False)
        seconds = time.monotonic() - started
    for text in (done.stdout.strip(), done.stderr.strip()):
        if text:
            print(text)
    print(f"`invoke eval --dataset gsm8k --limit {args.limit} --protocol {args.protocol}` "
          f"took {seconds:.1f} s (exit {done.returncode}; GSM8K {train:,} train / "
          f"{test:,} test from openai/grade-school-math)")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
