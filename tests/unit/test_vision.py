"""Vision (#19): the tiny GLM-4.5V, the CPU image's vision extras, the vision flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glmkit.knowledge.catalog import TINY_MODEL_ID, TINY_VISION_ID, resolve_model
from glmkit.plan.serve import CONTAINER_MEDIA
from glmkit.run import image_build, tiny_model
from tests.unit.helpers import plan_for

ROOT = Path(__file__).parents[2]


def test_the_tiny_vision_model_is_a_catalog_vision_model_made_locally() -> None:
    spec = resolve_model(TINY_VISION_ID)
    assert spec.vision and spec.local_dir == "models/glm-tiny-vision"
    assert spec.tool_parser == "glm45" and spec.reasoning_parser == "glm45"
    assert tiny_model.kind_of(TINY_VISION_ID) is tiny_model.VISION
    assert tiny_model.kind_of(TINY_MODEL_ID) is tiny_model.TEXT
    assert tiny_model.kind_of("zai-org/GLM-4.5V") is None


def test_tiny_model_hashes_cover_the_scripts_each_model_imports(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("make_tiny_glm.py", "train_tiny_tools.py", "make_tiny_glm_vision.py",
                 "train_tiny_vision.py"):
        (scripts / name).write_text(name)
    text, vision = (tiny_model.recipe_hash(scripts, 2, k)
                    for k in (tiny_model.TEXT, tiny_model.VISION))
    assert text != vision
    # The vision model uses the text model's tokenizer and training helpers: a change there
    # makes it again; a change to the vision scripts leaves the text model alone.
    (scripts / "make_tiny_glm.py").write_text("changed")
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.VISION) != vision
    (scripts / "train_tiny_vision.py").write_text("changed")
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.TEXT) != text  # make_tiny_glm changed
    before = tiny_model.recipe_hash(scripts, 2, tiny_model.TEXT)
    (scripts / "make_tiny_glm_vision.py").write_text("changed again")
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.TEXT) == before


def test_tiny_vision_serves_with_the_vision_flags_the_cpu_build_accepts(tmp_path: Path) -> None:
    plan = plan_for(vendor="cpu", model=TINY_VISION_ID, media_dir=str(tmp_path))
    args = plan.serve_args
    for flag, value in (("--mm-encoder-tp-mode", "data"), ("--mm-processor-cache-type", "shm"),
                        ("--allowed-local-media-path", CONTAINER_MEDIA)):
        assert args[args.index(flag) + 1] == value
    assert "--enable-expert-parallel" in args and "/" not in args
    media = [m for m in plan.mounts if m.target == CONTAINER_MEDIA]
    assert media and media[0].read_only and media[0].source == str(tmp_path)
    assert "--allowed-local-media-path" not in plan_for(vendor="cpu",
                                                        model=TINY_VISION_ID).serve_args


def test_extras_are_exact_pins_hashed_into_the_build(tmp_path: Path) -> None:
    pins = image_build.extras_pins(ROOT / "docker/cpu" / image_build.EXTRAS)
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", p) for p in pins)
    assert any(p.startswith("torchvision==") for p in pins)
    assert any(p.startswith("datasets==") for p in pins)
    ignore = (ROOT / "docker/cpu/.dockerignore").read_text().split()
    assert "!extras.txt" in ignore and "!wheelhouse-extras/*.whl" in ignore
    # The build hash moves with the pins, so a changed pin rebuilds the image.
    from glmkit.knowledge.images import CPU_IMAGE

    build = tmp_path / "docker/cpu"
    build.mkdir(parents=True)
    (build / "Dockerfile").write_text((ROOT / "docker/cpu/Dockerfile").read_text())
    (build / image_build.EXTRAS).write_text("datasets==1.0\n")
    first = image_build.build_hash(CPU_IMAGE, tmp_path)
    (build / image_build.EXTRAS).write_text("datasets==1.1\n")
    assert image_build.build_hash(CPU_IMAGE, tmp_path) != first


@pytest.mark.parametrize("line", ["# comment", "", "   "])
def test_extras_pins_skip_comments_and_blanks(tmp_path: Path, line: str) -> None:
    path = tmp_path / "extras.txt"
    path.write_text(f"{line}\ndatasets==5.2.0\n")
    assert image_build.extras_pins(path) == ["datasets==5.2.0"]
