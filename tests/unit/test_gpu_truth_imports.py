"""scripts/gpu_truth.py run on a GPU host that lacks one of its Python modules (#36): it
stops before the server starts, in one line naming the module. On an H100 the results
store's imports (the docker SDK, rich, ...) were missing: the server reached healthy and
was killed when the first point was to be stored, a whole start lost."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_truth_imports",
                                                  ROOT / "scripts" / "gpu_truth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layout(tmp_path: Path) -> Path:
    folder = tmp_path / "layout"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text(json.dumps({"vocab_size": 64}))
    (folder / "layout.json").write_text(json.dumps({
        "model": "zai-org/GLM-4.7-Flash", "mtp": False, "serve_args": [], "environment": {},
        "image": "x", "start_period": "1s", "glmkit_commit": "abc"}))
    return folder


def _run_args(folder: Path, tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(layout=str(folder), results=str(tmp_path / "results"),
                              concurrency="1", port=8123, tuned_moe=None, tag="",
                              health_timeout=5.0)


@pytest.fixture(autouse=True)
def _glmkit_modules_as_they_were() -> Iterator[None]:
    """_hide drops glmkit's modules so the script imports them afresh; afterwards every
    later test must see the originals again, in sys.modules and as attributes of their
    packages (monkeypatch.setattr("glmkit.x.y", ...) walks the attributes), or a patch
    and an import reach two different copies of one module."""
    before = {n: m for n, m in sys.modules.items() if n == "glmkit" or n.startswith("glmkit.")}
    yield
    for name in [n for n in sys.modules if n.startswith("glmkit.") and n not in before]:
        del sys.modules[name]
    sys.modules.update(before)
    for name, module in before.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, module)


def _no_server(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []

    def popen(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise AssertionError("the server was started")

    monkeypatch.setattr(script.subprocess, "Popen", popen)
    return started


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """`module` as a host without it sees it: importing it fails, and so does importing
    the store that needs it (dropped from the module cache for this test only)."""
    monkeypatch.setitem(sys.modules, module, None)  # type: ignore[arg-type]
    for name in list(sys.modules):
        if name.startswith(("glmkit.", module + ".")):
            monkeypatch.delitem(sys.modules, name)


def _present(monkeypatch: pytest.MonkeyPatch, script: ModuleType) -> None:
    """vLLM, torch and the tokenizer libraries as a GPU host has them (not in this venv)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in script.RUN_MODULES
                        else real(name, *a))


@pytest.mark.parametrize("missing", ["docker", "rich", "yaml", "filelock"])
def test_a_missing_results_store_module_stops_run_before_the_server(
        missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script()
    started = _no_server(script, monkeypatch)
    _present(monkeypatch, script)
    _hide(monkeypatch, missing)
    with pytest.raises(SystemExit) as exited:
        script.run(_run_args(_layout(tmp_path), tmp_path))
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message
    assert f"Python module {missing!r} is not importable" in message
    assert "docs/gpu.md" in message and not started


def test_a_missing_vllm_stops_run_before_the_server(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """This venv has no vLLM, as a host that forgot its wheels."""
    script = _script()
    started = _no_server(script, monkeypatch)
    with pytest.raises(SystemExit) as exited:
        script.run(_run_args(_layout(tmp_path), tmp_path))
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message
    assert "Python module 'vllm' is not importable" in message and not started


def test_with_every_module_present_run_goes_on_to_start_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check passes where everything is there: the next step (the tokenizer, then the
    server) is reached."""
    script = _script()
    _present(monkeypatch, script)
    reached: list[str] = []
    monkeypatch.setattr(script, "make_tokenizer", lambda *a: reached.append("tokenizer")
                        or (_ for _ in ()).throw(SystemExit("stop here")))
    with pytest.raises(SystemExit, match="stop here"):
        script.run(_run_args(_layout(tmp_path), tmp_path))
    assert reached == ["tokenizer"]


def test_the_modules_run_imports_are_listed_in_the_gpu_docs() -> None:
    docs = (ROOT / "docs" / "gpu.md").read_text()
    for name in ("pydantic", "docker SDK", "rich", "pyyaml", "filelock", "packaging"):
        assert name in docs


def test_an_fp8_layout_also_needs_what_vllms_fp8_path_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/gpu.md: GLM FP8 checkpoints also need compressed-tensors and loguru."""
    script = _script()
    started = _no_server(script, monkeypatch)
    _present(monkeypatch, script)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "compressed_tensors"
                        else object() if name in script.RUN_MODULES else real(name, *a))
    folder = _layout(tmp_path)
    config = folder / "model" / "config.json"
    config.write_text(json.dumps({"vocab_size": 64, "quantization_config": {
        "quant_method": "fp8", "weight_block_size": [128, 128]}}))
    with pytest.raises(SystemExit, match="Python module 'compressed_tensors' is not "
                                         "importable"):
        script.run(_run_args(folder, tmp_path))
    assert not started
