"""Vision for real (#19): the tiny GLM-4.5V served on the CPU image, images and video
through the APIs (`invoke check`), VisionArena offline and random-mm (`invoke bench`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .common import ROOT, invoke, port, project, serving

pytestmark = pytest.mark.e2e

PROJECT = project("vis")
PORT = port("vis")
MODEL = "glmkit/glm-tiny-vision"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def server(media: Path) -> Iterator[subprocess.CompletedProcess[str]]:
    with serving(PROJECT, "--vendor", "cpu", "--model", MODEL, "--port", str(PORT),
                 "--media-dir", str(media)) as done:
        yield done


def _newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda p: p.stat().st_mtime)


def test_up_serves_the_vision_flags_with_a_narrow_media_folder(
        server: subprocess.CompletedProcess[str]) -> None:
    compose = (ROOT / "compose" / f"{PROJECT}.yaml").read_text()
    for flag in ("--mm-encoder-tp-mode", "--mm-processor-cache-type", "--enable-expert-parallel",
                 "--allowed-local-media-path"):
        assert flag in compose
    assert "shm_size: 6gb" in compose  # 2 GB for the CPU workers + the 4 GB shm cache
    assert "tool call (auto, not streamed, thinking off): ok" in server.stdout


def test_check_sends_images_and_video_through_every_api(
        server: subprocess.CompletedProcess[str], media: Path) -> None:
    done = invoke("check", "--project", PROJECT, "--api", "all", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    table = json.loads(_newest(ROOT / "results" / "checks", f"*-{PROJECT}.json").read_text())
    vision = [c for c in table["cases"] if c["case"].startswith("vision:")]
    by_api = {api: [c for c in vision if c["api"] == api]
              for api in ("chat", "messages", "responses")}
    assert len(by_api["chat"]) == 10 and by_api["messages"] and by_api["responses"]
    assert all(c["ok"] for c in vision), [c for c in vision if not c["ok"]]
    refused = [c for c in vision if "refused:" in c["case"]]
    assert len(refused) == 3 and all("400" in c["detail"] for c in refused)
    assert not list(media.iterdir())  # the check's test image is gone again


def test_visionarena_runs_offline_on_the_generated_sample(
        server: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    data = tmp_path / "visionarena"
    made = invoke("bench-data", "--out", str(data), "--rows", "16")
    assert made.returncode == 0, made.stdout + made.stderr
    revision = json.loads((data / "glmkit-dataset.json").read_text())["revision"]
    done = invoke("bench", "--project", PROJECT, "--workload", "visionarena", "--dataset-path",
                  str(data), "--batch", "4", "--label", f"e2e-visionarena-{revision}",
                  timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run = _newest(ROOT / "results", f"*-e2e-visionarena-{revision}")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["workload"]["name"] == "visionarena"
    assert meta["workload"]["dataset_revision"] == revision
    point = json.loads(next((run / "points").glob("*.json")).read_text())
    assert point["completed"] == 4 and point["failed"] == 0
    # bench_argv writes each value as --flag=value (a word from data is never an option).
    assert any(w.startswith("--hf-name=") for w in point["glmkit"]["argv"])


def test_visionarena_without_data_is_one_clear_line(
        server: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    done = invoke("bench", "--project", PROJECT, "--workload", "visionarena",
                  env={"HF_HOME": str(tmp_path / "empty-hf")})
    assert done.returncode != 0
    assert "VisionArena is not on this machine" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_random_mm_sends_synthetic_images(server: subprocess.CompletedProcess[str]) -> None:
    # Short texts: the images are the point, and CI time is short.
    done = invoke("bench", "--project", PROJECT, "--workload", "random-mm", "--batch", "2",
                  "--input-len", "64", "--output-len", "16", "--label", "e2e-random-mm",
                  timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
