"""tiny-arith, the GSM8K-format set the tiny model learns, and the perturbed copy that
must fail `invoke eval --against glmkit/glm-tiny` (#34)."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from glmkit.run import tiny_model

ROOT = Path(__file__).parents[2]
DATA = ROOT / "src" / "glmkit" / "data" / "tiny_gsm8k.json"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the set ----------------------------------------------------------------------------

def test_tiny_arith_is_what_its_seeded_script_makes() -> None:
    made = _script("make_arith_set").make()
    assert DATA.read_text() == json.dumps(made, indent=1, ensure_ascii=False) + "\n"
    assert _script("make_arith_set").make() == made  # the seed: the same set every time


def test_tiny_arith_has_gsm8k_fields_and_answers_that_add_up() -> None:
    data = json.loads(DATA.read_text())
    assert set(data) == {"name", "source", "train", "test"} and data["name"] == "tiny-arith"
    assert len(data["train"]) >= 5 and len(data["test"]) >= 50
    questions = [item["question"] for split in ("train", "test") for item in data[split]]
    assert len(set(questions)) == len(questions)
    for split in ("train", "test"):
        for item in data[split]:
            assert set(item) == {"question", "answer"}
            a, b = map(int, re.findall(r"\d+", item["question"]))
            # GSM8K's form: a worked solution, then "#### N" on the last line.
            assert item["answer"] == f"{a} + {b} = {a + b}\n#### {a + b}"
    # A name and a thing of its own in every question: what the tiny model keys on.
    words = [re.match(r"(\w+) has \d+ (\w+)", q).groups() for q in questions]  # type: ignore[union-attr]
    assert len({w[0] for w in words}) == len({w[1] for w in words}) == len(questions)


# --- the model learns it -----------------------------------------------------------------

def test_the_text_model_is_made_again_when_tiny_arith_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arith = tmp_path / "tiny_gsm8k.json"
    arith.write_text(DATA.read_text())
    monkeypatch.setattr(tiny_model, "ARITH", arith)
    scripts = ROOT / "scripts"
    text, vision = (tiny_model.recipe_hash(scripts, 2, k)
                    for k in (tiny_model.TEXT, tiny_model.VISION))
    arith.write_text(DATA.read_text().replace("#### 1", "#### 2"))
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.TEXT) != text
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.VISION) == vision  # not its set


@pytest.mark.parametrize("kind", [tiny_model.TEXT, tiny_model.VISION])
def test_only_the_text_model_is_taught_tiny_arith(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: tiny_model.TinyKind) -> None:
    """Both scripts get the set (the tokenizer learns its words, the trainer its answers),
    from the data folder that is mounted read-only; the vision model gets neither."""
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_: object) -> None:
        calls.append(argv)
        (out,) = (a.removesuffix(":/out") for a in argv if a.endswith(":/out"))
        (Path(out) / tiny_model.INFO).write_text("{}")

    monkeypatch.setattr(tiny_model, "run", fake_run)
    tiny_model.generate("img", tmp_path / "m", ROOT / "scripts", kind=kind)
    (argv,) = calls
    script = argv[argv.index("-c") + 1]
    expected = 2 if kind is tiny_model.TEXT else 0
    assert script.count("--arith /glmkit-data/tiny_gsm8k.json") == expected
    assert f"{tiny_model.ARITH.parent.resolve()}:/glmkit-data:ro" in argv


# --- the perturbed copy -----------------------------------------------------------------

def _bf16(values: np.ndarray) -> bytes:
    return (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    body = b""
    for name, (dtype, values) in tensors.items():
        raw = _bf16(values) if dtype == "BF16" else values.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(values.shape),
                        "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def _tensors(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    return {name: data[8 + size + e["data_offsets"][0]:8 + size + e["data_offsets"][1]]
            for name, e in header.items() if name != "__metadata__"}


ROUTED = "model.layers.1.mlp.experts.0.gate_proj.weight"
KEPT = ("model.layers.1.mlp.shared_experts.gate_proj.weight", "model.layers.1.mlp.gate.weight",
        "model.layers.0.mlp.down_proj.weight", "lm_head.weight")


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "glm-tiny"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    rng = np.random.default_rng(7)
    _write_safetensors(folder / "model.safetensors", {
        ROUTED: ("BF16", rng.standard_normal((64, 32)) * 0.02),
        "model.layers.1.mlp.experts.3.down_proj.weight": ("F32", rng.standard_normal((32, 64))),
        **{name: ("BF16", rng.standard_normal((8, 32))) for name in KEPT}})
    return folder


def test_the_perturbed_copy_changes_the_routed_experts_and_nothing_else(
        model_folder: Path, tmp_path: Path) -> None:
    perturb = _script("perturb_experts")
    changed = perturb.perturb(model_folder, tmp_path / "broken", scale=4.0, seed=0)
    assert sorted(changed) == sorted([ROUTED, "model.layers.1.mlp.experts.3.down_proj.weight"])
    before = _tensors(model_folder / "model.safetensors")
    after = _tensors(tmp_path / "broken" / "model.safetensors")
    assert all(after[name] == before[name] for name in KEPT)
    assert (tmp_path / "broken" / "tokenizer.json").read_text() == "{}"  # the rest copied
    old = perturb.bf16_to_f32(np.frombuffer(before[ROUTED], "<u2"))
    new = perturb.bf16_to_f32(np.frombuffer(after[ROUTED], "<u2"))
    assert 3.0 < float((new - old).std() / old.std()) < 5.0  # noise of 4 standard deviations


def test_the_perturbed_copy_is_the_same_for_a_seed(model_folder: Path, tmp_path: Path) -> None:
    perturb = _script("perturb_experts")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        perturb.perturb(model_folder, tmp_path / name, seed=seed)
    made = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in "abc"}
    assert made["a"] == made["b"] != made["c"]


def test_perturbing_refuses_a_folder_that_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a model folder"):
        _script("perturb_experts").perturb(tmp_path, tmp_path / "out")


def test_bfloat16_round_trips() -> None:
    perturb = _script("perturb_experts")
    values = np.array([1.0, -2.5, 3.140625, 0.0, 65536.0, -1e-3], dtype=np.float32)
    exact = perturb.bf16_to_f32(perturb.f32_to_bf16(values))
    assert exact[:5].tolist() == values[:5].tolist()
    assert abs(float(exact[5]) + 1e-3) < 1e-5  # rounded to the nearest bfloat16
