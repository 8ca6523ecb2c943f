"""Write tests/unit/data/gsm8k_extraction.json: model outputs with the verdicts that
lm-evaluation-harness's own code gives them on its gsm8k task (#34).

glmkit implements GSM8K's answer extraction itself (glmkit.measure.accuracy says why).
This script is how that implementation is held to lm-eval's: every case below is run
through lm-eval's `RegexFilter` (the gsm8k.yaml filters strict-match and
flexible-extract, with their regexes and group_select) and `exact_match_hf_evaluate`
(with gsm8k.yaml's regexes_to_ignore and ignore_case), and the extracted strings and
verdicts are written down; tests/unit/test_accuracy.py checks glmkit's functions give
the same on every case. The gsm8k.yaml the filters are read from is lm-eval's own file,
so a change of lm-eval's task shows up as a changed fixture.

lm-eval is not a glmkit dependency (it needs torch). To run the oracle, install it
beside the kit without its dependencies (only numpy is needed by the parts used):

    pip install --no-deps --target /tmp/lmeval lm-eval==0.4.13
    PYTHONPATH=/tmp/lmeval:src .venv/bin/python scripts/lmeval_oracle.py

The `last_integer` column is vLLM CI's scorer (tests/evals/gsm8k/gsm8k_eval.py: the last
run of digits once commas are removed); it is written by hand per case, not by lm-eval.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "unit" / "data" / "gsm8k_extraction.json"
REF = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
REF_BIG = "She pays 1,000 + 250 = <<1000+250=1250>>1250 dollars.\n#### 1250"

# (note, model output, reference answer, vLLM CI's last integer of the output or None)
CASES: list[tuple[str, str, str, int | None]] = [
    ("plain few-shot answer", " She sold 48 + 24 = 72 clips.\n#### 72", REF, 72),
    ("wrong number", " She sold 48 + 25 = 73 clips.\n#### 73", REF, 73),
    ("comma thousands", " Total is 1,250 dollars.\n#### 1,250", REF_BIG, 1250),
    ("dollar sign", " She pays $1250 in all.\n#### $1250", REF_BIG, 1250),
    ("dollar sign without ####", " So she pays $1,250.", REF_BIG, 1250),
    ("trailing period", " The answer is 72.", REF, 72),
    ("trailing period after ####", " #### 72.", REF, 72),
    ("decimal zeros", " #### 72.00", REF, 0),
    ("negative number", " The change is -5 degrees.\n#### -5",
     "It dropped 5 degrees.\n#### -5", 5),
    ("negative single digit flexible", " so the total is -7",
     "Down seven.\n#### -7", 7),
    ("no number at all", " I do not know.", REF, None),
    ("empty output", "", REF, None),
    ("several ####, first wrong", " #### 70\nLet me recheck.\n#### 72", REF, 72),
    ("several ####, first right", " #### 72\nWait.\n#### 70", REF, 70),
    ("#### without space", " ####72", REF, 72),
    ("ellipsis at the end", " She sold 72 clips...", REF, 72),
    ("number then words", " 72 clips were sold in April and May together", REF, 72),
    ("list with commas", " Answers: 70, 71, 72", REF, 72),
    ("upper-case text", " THE ANSWER IS 72", REF, 72),
    ("next question leaked", " #### 72\n\nQuestion: How many", REF, 72),
    ("percent sign", " That is 72% of them.", REF, 72),
    ("equation at the end", " 48 + 24 = 72", REF, 72),
    ("leading space in ####", " ####  72", REF, 72),
    ("model says 72.5", " #### 72.5", REF, 5),
    ("hundred thousand commas", " #### 100,000", "Big.\n#### 100000", 100000),
    ("dollar then period", " In all $72.", REF, 72),
    ("think markup", "<think>48+24</think> #### 72", REF, 72),
]


def _lm_eval() -> tuple[Any, Any, dict[str, Any]]:
    """lm-eval's RegexFilter, exact_match_hf_evaluate and gsm8k.yaml's settings."""
    import yaml

    sys.modules.setdefault("sacrebleu", types.ModuleType("sacrebleu"))  # BLEU: unused here
    import lm_eval
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    task = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    return RegexFilter, exact_match_hf_evaluate, yaml.safe_load(task.read_text())


def main() -> None:
    regex_filter, exact_match, task = _lm_eval()
    filters = {f["name"]: f["filter"][0] for f in task["filter_list"]}
    metric = task["metric_list"][0]
    cases = []
    for note, output, answer, last in CASES:
        row: dict[str, Any] = {"note": note, "output": output, "answer": answer,
                               "last_integer": last}
        for name, key in (("strict-match", "strict"), ("flexible-extract", "flexible")):
            spec = filters[name]
            f = regex_filter(regex_pattern=spec["regex_pattern"],
                             group_select=spec.get("group_select", 0))
            extracted = next(iter(f.apply([[output]], [{}])))[0]
            score = exact_match([extracted], [answer],
                                regexes_to_ignore=metric["regexes_to_ignore"],
                                ignore_case=metric["ignore_case"],
                                ignore_punctuation=metric["ignore_punctuation"])
            row[key] = extracted
            row[f"{key}_ok"] = bool(score["exact_match"] == 1.0)
        cases.append(row)
    import lm_eval

    version = getattr(lm_eval, "__version__", "?")
    OUT.write_text(json.dumps({"lm_eval": version, "task_version": task["metadata"]["version"],
                               "cases": cases}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases (lm-eval {version}) to {OUT}")


if __name__ == "__main__":
    main()
