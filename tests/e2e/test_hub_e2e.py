"""Weights downloaded through the real huggingface_hub client from a local Hub, then
served by vLLM from the shared cache with the network off (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from ..fakehub import Hub, serve
from .common import ROOT, invoke, port, project

pytestmark = pytest.mark.e2e

PROJECT = project("hub")
PORT = port("hub")
REPO = "local-hub/tiny-glm4-moe"


def tiny_model_dir() -> Path:
    home = Path(os.environ.get("GLMKIT_HOME") or Path.home() / ".cache" / "glmkit")
    path = home / "models" / "glm-tiny"
    if not (path / "config.json").is_file():
        done = subprocess.run([sys.executable, "-m", "invoke", "tiny-model"], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return path


def test_download_then_serve_offline_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    env = {"HF_HUB_OFFLINE": "", "HF_TOKEN": ""}
    with serve(Hub(repos={REPO: tiny_model_dir()})) as endpoint:
        done = invoke("download", "--model", REPO, "--hf-cache", str(cache),
                      env={**env, "HF_ENDPOINT": endpoint}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HF_HUB_OFFLINE=1" in done.stdout
    try:
        up = invoke("up", "--vendor", "cpu", "--model", REPO, "--hf-cache", str(cache),
                    "--max-model-len", "2048", "--project", PROJECT, "--port", str(PORT),
                    "--no-smoke", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        compose = yaml.safe_load((ROOT / "compose" / f"{PROJECT}.yaml").read_text())
        assert "HF_HUB_OFFLINE=1" in compose["services"]["vllm"]["environment"]
        reply = requests.post(f"http://127.0.0.1:{PORT}/v1/chat/completions", timeout=120,
                              json={"model": "tiny-glm4-moe", "max_tokens": 8,
                                    "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        invoke("down", "--project", PROJECT, env=env, timeout=120)
