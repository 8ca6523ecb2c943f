"""`invoke eval` for real (#34): the tiny model answers tiny-arith, the set it was trained
on, through vLLM's CPU build; a copy of it whose routed experts are perturbed (what a broken
quantization does, scripts/perturb_experts.py), served from a folder, fails the gate
against it. The tiny model's tests share the keyless tiny server (TINY); the copy needs a
server of its own (other weights), started here with --enforce-eager (half the start-up)
and brought down at the end of its test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .common import ROOT, TINY, invoke, port, project, serving

pytestmark = pytest.mark.e2e

PERTURBED = project("perturbed")
# "tiny-arith completions-5shot: flexible 1.000 (95% CI 0.929-1.000), strict 1.000, n=50 …"
SUMMARY = re.compile(r"^tiny-arith completions-5shot: flexible (\d\.\d{3}) "
                     r"\(95% CI (\d\.\d{3})-(\d\.\d{3})\), strict (\d\.\d{3}), n=50\b")


@pytest.fixture
def server(tiny_server: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    return tiny_server


def _tiny_model_folder() -> Path:
    """The folder `up` made the tiny model in (run/tiny_model.py)."""
    home = Path(os.environ.get("GLMKIT_HOME") or Path.home() / ".cache" / "glmkit")
    return home / "models" / "glm-tiny"


def test_eval_prints_the_tiny_models_score_and_interval(server: object) -> None:
    done = invoke("eval", "--project", TINY.project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = done.stdout.splitlines()
    found = SUMMARY.match(line)
    assert found, line
    flexible, low, high, strict = map(float, found.groups())
    # Trained until every answer's tokens lead by 5 logits in torch: vLLM's numerics
    # must not move one of them.
    assert flexible == strict == 1.0 and low < flexible <= high, line


def test_a_copy_with_perturbed_experts_fails_against_the_tiny_model(
        server: object, tmp_path: Path) -> None:
    saved = invoke("eval", "--project", TINY.project, "--save-baseline", timeout=300)
    assert saved.returncode == 0 and "saved as the baseline" in saved.stdout, \
        saved.stdout + saved.stderr
    copy = tmp_path / "glm-tiny-perturbed"
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "perturb_experts.py"),
                           str(_tiny_model_folder()), str(copy)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert made.returncode == 0, made.stderr
    copy.chmod(0o755)  # the server reads it as another user
    with serving(PERTURBED, "--model", str(copy), "--vendor", "cpu",
                 "--port", str(port("perturbed")), "--max-model-len", "2048",
                 "--enforce-eager", "--no-smoke"):
        done = invoke("eval", "--project", PERTURBED, "--against", "glmkit/glm-tiny",
                      timeout=300)
    assert done.returncode == 8, done.stdout + done.stderr
    [error] = done.stderr.strip().splitlines()
    # One line: the score, how far below, the reference and where it comes from.
    assert re.search(r"flexible 0\.\d{3} on 50 questions is 0\.\d{3} below baseline of "
                     r"glmkit/glm-tiny", error), error
    assert float(re.search(r"flexible (0\.\d{3})", error).group(1)) <= 0.5, error  # type: ignore[union-attr]
