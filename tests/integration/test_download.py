"""`invoke download` with the real huggingface_hub client against a local Hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.host.hub import download, is_complete, offline_env

from ..fakehub import Hub, serve


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "original").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "glm4_moe"}))
    (root / "tokenizer.json").write_text("{}")
    (root / "chat_template.jinja").write_text("{{ messages }}")
    # Larger than the client's 10 MB read chunk, so a cut half-way leaves bytes to resume.
    (root / "model-00001-of-00002.safetensors").write_bytes(os.urandom(24_000_000))
    (root / "model-00002-of-00002.safetensors").write_bytes(os.urandom(1_000_000))
    (root / "original" / "consolidated.bin").write_bytes(b"x" * 1000)
    (root / "README.md").write_text("# card")
    return root


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_XET"):
        monkeypatch.delenv(var, raising=False)


def test_downloads_what_vllm_needs_and_marks_complete(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    with serve(Hub(repos={"zai-org/GLM-Tiny": repo})) as endpoint:
        result = download("zai-org/GLM-Tiny", cache, None, endpoint=endpoint)
    names = sorted(str(p.relative_to(result.path)) for p in result.path.rglob("*")
                   if p.is_file())
    assert names == ["chat_template.jinja", "config.json", "model-00001-of-00002.safetensors",
                     "model-00002-of-00002.safetensors", "tokenizer.json"]
    assert result.path.parent.parent.name == "models--zai-org--GLM-Tiny"
    assert (result.path / "model-00001-of-00002.safetensors").read_bytes() == \
        (repo / "model-00001-of-00002.safetensors").read_bytes()
    assert is_complete(cache, "zai-org/GLM-Tiny")
    assert offline_env(cache, "zai-org/GLM-Tiny", {}) == {"HF_HUB_OFFLINE": "1"}
    assert offline_env(cache, "zai-org/Other", {}) == {}


def test_interrupted_download_resumes(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    big = "model-00001-of-00002.safetensors"
    hub = Hub(repos={"zai-org/GLM-Tiny": repo}, cut_once={big})
    with serve(hub) as endpoint:
        try:
            download("zai-org/GLM-Tiny", cache, None, endpoint=endpoint, max_workers=1)
        except EnvironmentProblem as err:  # the client may give up on the cut: run it again
            assert "again" in str(err)
            assert not is_complete(cache, "zai-org/GLM-Tiny")
            download("zai-org/GLM-Tiny", cache, None, endpoint=endpoint, max_workers=1)
    assert is_complete(cache, "zai-org/GLM-Tiny")
    snapshot = next((cache / "hub" / "models--zai-org--GLM-Tiny" / "snapshots").iterdir())
    assert (snapshot / big).read_bytes() == (repo / big).read_bytes()
    ranged = [r for r in hub.requests if r[0] == "GET" and r[1].endswith(big) and r[2]]
    assert ranged, f"no Range request: the download restarted from zero ({hub.requests})"
    assert ranged[-1][2] != "bytes=0-"


def test_gated_repo_without_token(repo: Path, tmp_path: Path) -> None:
    hub = Hub(repos={"zai-org/GLM-Gated": repo}, gated={"zai-org/GLM-Gated"})
    with serve(hub) as endpoint:
        with pytest.raises(EnvironmentProblem, match="is gated: accept its terms.*invoke login"):
            download("zai-org/GLM-Gated", tmp_path / "hf", None, endpoint=endpoint)
        result = download("zai-org/GLM-Gated", tmp_path / "hf", hub.token, endpoint=endpoint)
    assert result.files == 5


def test_missing_repo(repo: Path, tmp_path: Path) -> None:
    with serve(Hub(repos={})) as endpoint, \
            pytest.raises(UsageError, match="was not found on the Hub"):
        download("zai-org/GLM-Nope", tmp_path / "hf", None, endpoint=endpoint)


def test_not_enough_disk(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9, 1000))
    with serve(Hub(repos={"zai-org/GLM-Tiny": repo})) as endpoint, \
            pytest.raises(EnvironmentProblem, match="needs 0.0 GB.*free"):
        download("zai-org/GLM-Tiny", tmp_path / "hf", None, endpoint=endpoint)
    assert not (tmp_path / "hf" / "hub" / "models--zai-org--GLM-Tiny").exists()


def test_sizing_reads_config_json_fetched_alone_from_the_hub(tmp_path: Path) -> None:
    from glmkit.host.hub import fetch_config
    from glmkit.knowledge.catalog import CATALOG
    from glmkit.knowledge.sizing import ARCH, model_arch

    repo = tmp_path / "glm5"
    repo.mkdir()
    config = {"num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 64,
              "hidden_size": 6144, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
              "n_routed_experts": 256, "num_experts_per_tok": 8, "index_topk": 2048,
              "index_head_dim": 128}
    (repo / "config.json").write_text(json.dumps(config))
    (repo / "model.safetensors").write_bytes(b"x" * 100)
    cache = tmp_path / "hf"
    model = CATALOG["zai-org/GLM-5.2-FP8"]
    with serve(Hub(repos={model.id: repo})) as endpoint:
        arch = model_arch(model, cache, fetch=lambda: fetch_config(model.id, cache, None, {},
                                                                   endpoint=endpoint))
    assert arch.layers == 80 and arch.source == "config.json from the Hub"
    assert arch.mla_cache_dim == 576 and arch.sparse_topk == 2048
    assert not list(cache.rglob("*.safetensors"))  # config.json alone
    # Offline: the built-in facts, at once.
    offline = model_arch(model, tmp_path / "empty", fetch=lambda: fetch_config(
        model.id, tmp_path / "empty", None, {}, endpoint="http://127.0.0.1:9"))
    assert offline == ARCH["GLM-5.2"]
