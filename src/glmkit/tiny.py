"""The embedded default model: a tiny GLM-4 MoE with random weights, made locally.

It is generated inside the CPU vLLM image (torch, transformers and tokenizers are
already there), so the host needs nothing but Docker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from glmkit.errors import CommandFailed, EnvironmentProblem
from glmkit.process import run

GENERATOR = "make_tiny_glm.py"


def generate(image: str, out_dir: Path, scripts_dir: Path, layers: int = 2,
             force: bool = False) -> bool:
    """Write the model to `out_dir` unless it is there; returns True when generated."""
    if (out_dir / "config.json").is_file() and not force:
        return False
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    argv = ["docker", "run", "--rm", "--network", "none",
            "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
            "-v", f"{scripts_dir.resolve()}:/glmkit-scripts:ro",
            "-v", f"{staging.resolve()}:/out",
            "--entrypoint", "python3", image,
            f"/glmkit-scripts/{GENERATOR}", "/out", "--layers", str(layers)]
    try:
        run(argv)
    except CommandFailed as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise EnvironmentProblem(f"Generating the tiny model failed: "
                                 f"{(err.stderr or err.stdout).strip()[-800:]}") from None
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return True
