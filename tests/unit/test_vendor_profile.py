"""Vendor facts live on the vendor profile: code asks the profile, never compares a
vendor's name to a literal, and the plans for each vendor are what they were."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from glmkit.host.hardware import Hardware, needs_cuda12_images
from glmkit.host.vendors import VENDORS, resolve_vendor
from glmkit.knowledge.catalog import resolve_model
from glmkit.knowledge.images import choose_image, official_image
from glmkit.knowledge.recipes import load_book
from glmkit.knowledge.resolver import target_for
from glmkit.render import k8s
from tests.unit.helpers import NO_GPU, gpus, plan_for

SRC = Path(__file__).resolve().parents[2] / "src" / "glmkit"
NAMES = {"rocm", "cuda", "cpu", "amd", "nvidia"}
# Modules outside this change's reach that still compare a vendor's name (issue #18);
# the list only shrinks.
NOT_YET: set[str] = set()


def _compares_a_vendor_name(tree: ast.AST) -> list[int]:
    def literal(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            # Case matters: "AMD", "NVIDIA", "CPU" are the recipes' taxonomy brands.
            return isinstance(node.value, str) and node.value in NAMES
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(literal(e) for e in node.elts)
        return False

    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(literal(side) for side in (node.left, *node.comparators))]


def test_no_module_compares_a_vendor_name_to_a_literal() -> None:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC).as_posix()
        if where != "host/vendors.py" and (lines := _compares_a_vendor_name(
                ast.parse(path.read_text()))):
            found[where] = lines
    assert set(found) - NOT_YET == set(), found


def test_the_check_sees_the_shapes_it_forbids() -> None:
    for text in ('v == "rocm"', '"cuda" != v', 'v in ("cuda", "rocm")', 'v.name == "cpu"'):
        assert _compares_a_vendor_name(ast.parse(text)), text
    assert not _compares_a_vendor_name(ast.parse('brand == "AMD" or x == profile.name'))


def test_every_gpu_vendor_says_what_the_rest_of_glmkit_asks() -> None:
    book = load_book({}, synced=False)
    for profile in VENDORS.values():
        assert profile.brand in ("NVIDIA", "AMD", "CPU")
        if profile.has_gpus:
            assert profile.reference_node in book.hardware
            assert profile.k8s_gpu_resource and profile.image_repository
            assert profile.recipe_image_key and profile.driver
            assert book.hardware[profile.reference_node]["brand"] == profile.brand
        else:
            assert profile.image_repository is None and profile.k8s_gpu_resource is None
    assert k8s.GPU_RESOURCE == {"cuda": "nvidia.com/gpu", "rocm": "amd.com/gpu"}


def test_images_ask_the_profile() -> None:
    cuda, rocm, cpu = VENDORS["cuda"], resolve_vendor("amd"), VENDORS["cpu"]
    assert official_image(cuda).ref == "vllm/vllm-openai:v0.33.0"
    assert official_image(cuda, cuda12=True).ref == "vllm/vllm-openai:v0.33.0-cu129"
    assert official_image(rocm, cuda12=True).ref == "vllm/vllm-openai-rocm:v0.33.0"
    assert official_image(cpu, "0.32.0").ref == "glmkit/vllm-cpu:0.32.0"
    glm52 = resolve_model("zai-org/GLM-5.2-FP8")
    assert choose_image(glm52, cuda).ref == "vllm/vllm-openai:v0.23.0"
    assert choose_image(glm52, cuda, cuda12=True).ref == "vllm/vllm-openai:v0.23.0-cu129"
    assert choose_image(glm52, rocm).ref == \
        "vllm/vllm-openai-rocm:nightly-4c626633159887b0f2c962058c17c78f1434556d"


def test_an_unnamed_gpu_takes_the_vendors_brand() -> None:
    book = load_book({}, synced=False)
    assert target_for(book, "GPU", 8, 192.0, VENDORS["rocm"]).brand == "AMD"
    assert target_for(book, "GPU", 8, 192.0, VENDORS["cuda"]).brand == "NVIDIA"
    assert target_for(book, "Radeon X", 1, 32.0).brand == "AMD"  # no vendor: by its name
    assert target_for(book, "GPU", 1, 32.0, VENDORS["cpu"]).brand == "NVIDIA"


def test_the_cuda12_check_is_the_profiles() -> None:
    old = Hardware(vendor="cuda", driver_version="575.57.08")
    assert needs_cuda12_images(old)
    assert not needs_cuda12_images(Hardware(vendor="rocm", driver_version="575.57.08"))


# Recorded from the code before the vendor facts moved onto the profile.
@pytest.mark.parametrize(("hw", "settings", "image", "args"), [
    (NO_GPU, {"vendor": "cuda", "model": "zai-org/GLM-4.6-FP8"}, "vllm/vllm-openai:v0.33.0",
     ["--tensor-parallel-size", "8", "--max-model-len", "65536"]),
    (NO_GPU, {"vendor": "rocm", "model": "zai-org/GLM-4.6-FP8"},
     "vllm/vllm-openai-rocm:v0.33.0", ["--tensor-parallel-size", "8"]),
    (NO_GPU, {"vendor": "amd", "model": "zai-org/GLM-4.6-FP8", "vllm_version": "0.15.1"},
     "vllm/vllm-openai-rocm:v0.15.1", ["--gpu-memory-utilization", "0.9",
                                       "--disable-log-requests"]),
    (NO_GPU, {"vendor": "nvidia", "model": "zai-org/GLM-4.6-FP8", "cuda12": True},
     "vllm/vllm-openai:v0.33.0-cu129", ["--gpu-memory-utilization", "0.9"]),
    (NO_GPU, {"vendor": "rocm", "model": "amd/GLM-5.2-MXFP4", "gpu": "mi355x"},
     "vllm/vllm-openai-rocm:nightly-4c626633159887b0f2c962058c17c78f1434556d", []),
    (NO_GPU, {"vendor": "cpu", "model": "glmkit/glm-tiny"}, "glmkit/vllm-cpu:0.32.0",
     ["--dtype", "bfloat16"]),
    (gpus("cuda", 4), {"model": "zai-org/GLM-4.5-Air-FP8"}, "vllm/vllm-openai:v0.33.0",
     ["--tensor-parallel-size", "4"]),
])
def test_plans_per_vendor_are_unchanged(hw: Hardware, settings: dict[str, object],
                                        image: str, args: list[str]) -> None:
    plan = plan_for(hw, **settings)
    assert plan.image.ref == image
    joined = " ".join(plan.serve_args)
    assert " ".join(args) in joined
    assert ("--disable-log-requests" in joined) == ("--disable-log-requests" in args)


def test_vendor_access_is_unchanged() -> None:
    rocm = plan_for(NO_GPU, vendor="rocm", model="zai-org/GLM-4.6-FP8", gpus="0,1,2,3,4,5,6,7")
    assert rocm.environment["HIP_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert rocm.devices == ("/dev/kfd", "/dev/dri") and rocm.group_add == ("44", "993")
    assert rocm.target.id == "mi355x" or rocm.target.id == "mi300x"
    assert plan_for(NO_GPU, vendor="cuda", model="zai-org/GLM-4.6-FP8").target.id == "h200"
    assert plan_for(NO_GPU, vendor="rocm", model="zai-org/GLM-4.6-FP8").target.id == "mi300x"
