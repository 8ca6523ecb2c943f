"""Issue #27, the trust boundary's second round: each line's input through the real CLI
(invoke's Program in this process, as tests/unit/test_cli_trust.py runs it) or the
library entry point the line names. Every test here failed on main at 3910b6e."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_cli_trust import one_line_error, run_task
from tests.unit.test_recipe_trust import (  # noqa: F401 (no_git_commit: autouse)
    checkout,
    env_for,
    glm46,
    no_git_commit,
    plant,
    synced,
)

ATTACKER = "attacker/backdoored-vllm:1"


def compose_text(tmp_path: Path, project: str = "glmkit") -> str:
    path = tmp_path / "compose" / f"{project}.yaml"
    return path.read_text() if path.exists() else ""


# --- H1: an image is code ------------------------------------------------------------------

def test_an_image_from_the_environment_must_be_official(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            env={"GLMKIT_IMAGE": ATTACKER})
    one_line_error(code, err, "GLMKIT_IMAGE 'attacker/backdoored-vllm:1' is not one of vLLM's")
    assert not (tmp_path / "compose").exists()


def test_an_image_from_invoke_yaml_must_be_official(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text(f"glmkit:\n  image: {ATTACKER}\n")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "-f", str(config), "render",
                            "--no-check")
    one_line_error(code, err, "invoke.yaml's image 'attacker/backdoored-vllm:1'")
    assert not (tmp_path / "compose").exists()


@pytest.mark.parametrize("image", ["glmkit/vllm-cpu:evil", "glmkit/vllm-cpu:0.32.0-pwn"])
def test_a_glmkit_name_glmkit_does_not_build_needs_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        image: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            env={"GLMKIT_IMAGE": image})
    one_line_error(code, err, "is not an image glmkit builds")


def test_the_command_line_may_name_any_image_and_the_note_says_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                              "--image", ATTACKER)
    assert code == 0, err
    assert f"image: {ATTACKER}" in compose_text(tmp_path)


@pytest.mark.parametrize("env", [{"GLMKIT_IMAGE": "glmkit/vllm-cpu:0.32.0"},
                                 {"GLMKIT_IMAGE": "vllm/vllm-openai:v0.33.0",
                                  "GLMKIT_VENDOR": "cuda", "GLMKIT_GPU": "h200",
                                  "GLMKIT_GPU_COUNT": "8", "GLMKIT_MODEL": "zai-org/GLM-4.6"}])
def test_official_and_glmkit_images_still_come_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        env: dict[str, str]) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", env=env)
    assert code == 0, err
    assert f"image: {env['GLMKIT_IMAGE']}" in compose_text(tmp_path)


@pytest.mark.parametrize("version", ["0.33.0 --x", "1;id", "\x1b]8;;http://x\x07a", "v" * 50])
def test_a_vllm_version_is_a_version(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     version: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            "--vendor", "cuda", "--gpu", "h200", "--vllm-version", version)
    one_line_error(code, err, "is not a vLLM version")
    assert "\x1b" not in err


# --- H2, M8: synced numbers --------------------------------------------------------------

BAD_NUMBERS: list[tuple[str, dict[str, Any]]] = [
    ("parameter_count", {"parameter_count": "1.2.3B"}),
    ("parameter_count", {"parameter_count": int("9" * 311)}),
    ("parameter_count", {"parameter_count": "9" * 311 + "B"}),
    ("active_parameters", {"active_parameters": "1e400B"}),
    ("precision", {"precision": "int4"}),
    ("vram_minimum_gb", {"vram_minimum_gb": 1.7e308}),
    ("model_id", {"model_id": "--tokenizer=attacker/GLM-4.6"}),
]


def _with_variant(change: dict[str, Any]) -> dict[str, Any]:
    data = glm46()
    first = next(iter(data["variants"]))
    data["variants"][first].update(change)
    return data


@pytest.mark.parametrize(("key", "change"), BAD_NUMBERS)
def test_a_bad_synced_value_is_refused_at_sync(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, key: str,
                                               change: dict[str, Any]) -> None:
    folder = checkout(tmp_path)
    (folder / "models/zai-org/GLM-4.6.yaml").write_text(yaml.safe_dump(_with_variant(change)))
    _, out, err = run_task(monkeypatch, capsys, tmp_path, "recipes", "sync", "--from",
                              str(folder), env=env_for(tmp_path))
    assert "Traceback" not in err + out
    assert "GLM-4.6.yaml" in out + err and key in out + err


@pytest.mark.parametrize(("key", "change"), BAD_NUMBERS)
@pytest.mark.parametrize("command", [["models"], ["render", "--no-check"],
                                     ["plan", "--gpu", "h200"],
                                     ["plan", "--gpu", "h200", "--model", "zai-org/GLM-4.6"],
                                     ["render", "--no-check", "--model", "zai-org/GLM-4.6",
                                      "--vendor", "cuda", "--gpu", "h200"]])
def test_a_bad_synced_value_is_skipped_at_load(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, key: str,
                                               change: dict[str, Any],
                                               command: list[str]) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml", yaml.safe_dump(_with_variant(change)))
    code, out, err = run_task(monkeypatch, capsys, tmp_path, *command, env=env)
    assert code == 0, err
    assert "Traceback" not in err + out


def test_a_taxonomy_gpu_of_absurd_memory_is_dropped(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    path = Path(env["GLMKIT_HOME"]) / "recipes/taxonomy.yaml"
    data = yaml.safe_load(path.read_text())
    data["hardware_profiles"]["h200"]["vram_gb"] = 1.7e308
    plant(env, "taxonomy.yaml", yaml.safe_dump(data))
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--model",
                              "zai-org/GLM-4.6", "--vendor", "cuda", "--gpu", "h200", env=env)
    assert "Traceback" not in err + out
    assert code == 0 and "H200 (141 GB" in out, err


def test_the_schema_sizes_every_precision_sizing_knows() -> None:
    from glmkit.knowledge.recipe_schema import PRECISIONS
    from glmkit.knowledge.sizing import BYTES

    assert set(PRECISIONS) == set(BYTES)


@pytest.mark.parametrize(("text", "billions"), [("358B", 358.0), ("12.5B", 12.5),
                                               ("300K", 3e-4), (32, 32.0), ("1.5T", 1500.0),
                                               (None, 0.0), ("  7b ", 7.0)])
def test_counts_the_recipes_write_still_parse(text: Any, billions: float) -> None:
    from glmkit.knowledge.recipe_schema import parse_count

    assert parse_count(text) == pytest.approx(billions)


# --- M1: one bounded reader for every file the kit did not write ---------------------------

def finishes(fn: Any, seconds: float = 30) -> Any:
    """`fn()` in a thread: a hang (a FIFO opened for reading) fails the test, not the run."""
    import threading

    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the caller, as a direct call would
            box["error"] = err

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def hf_config(tmp_path: Path, model: str = "zai-org/GLM-4.6") -> Path:
    snap = tmp_path / "hf" / "hub" / f"models--{model.replace('/', '--')}" / "snapshots" / "x"
    snap.mkdir(parents=True)
    return snap / "config.json"


GLM46 = ["--model", "zai-org/GLM-4.6", "--vendor", "cuda", "--gpu", "h200", "--gpu-count", "8"]


def test_a_fifo_as_the_caches_config_json_does_not_hang_render(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import os

    os.mkfifo(hf_config(tmp_path))
    code, _, err = finishes(lambda: run_task(monkeypatch, capsys, tmp_path, "render",
                                             "--no-check", *GLM46, "--hf-cache",
                                             str(tmp_path / "hf")))
    assert code == 0, err


def test_a_fifo_or_dev_zero_as_glmkit_hardware_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "hw.json"
    os.mkfifo(fifo)
    for where in (fifo, Path("/dev/zero")):
        code, _, err = finishes(lambda w=where: run_task(monkeypatch, capsys, tmp_path,
                                                         "render", "--no-check",
                                                         env={"GLMKIT_HARDWARE": str(w)}))
        one_line_error(code, err, "not a regular file")


def test_a_fifo_as_a_data_sets_info_does_not_hang(tmp_path: Path) -> None:
    import os

    from glmkit.measure.bench_data import INFO, locate_visionarena

    folder = tmp_path / "data"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.parquet").write_bytes(b"PAR1")
    os.mkfifo(folder / INFO)
    found = finishes(lambda: locate_visionarena(str(folder), tmp_path / "hf"))
    assert found.revision.startswith("local-")


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd"])
def test_a_run_folder_meta_json_linked_out_is_not_read(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path, target: str) -> None:
    run = tmp_path / "results" / "r1"
    run.mkdir(parents=True)
    (run / "meta.json").symlink_to(target)
    code, out, err = finishes(lambda: run_task(monkeypatch, capsys, tmp_path, "report",
                                               "--runs", "r1"))
    assert "Traceback" not in out + err and "root:" not in out + err
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    if target == "/etc/passwd":
        assert "symbolic link out of" in err


def test_the_tiny_models_config_still_reads_through_the_bounded_reader(tmp_path: Path) -> None:
    from glmkit.knowledge.catalog import resolve_model
    from glmkit.knowledge.sizing import known_arch

    spec = resolve_model("zai-org/GLM-4.6")
    snap = hf_config(tmp_path)
    blob = tmp_path / "hf" / "hub" / "models--zai-org--GLM-4.6" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_text('{"num_hidden_layers": 3, "num_attention_heads": 4, "hidden_size": 64}')
    snap.symlink_to(blob)  # how the HF cache stores every file: a link into blobs/
    arch = known_arch(spec, tmp_path / "hf")
    assert arch is not None and arch.layers == 3 and arch.source == "config.json"


# --- M2: config.json values ------------------------------------------------------------------

BAD_CONFIGS: list[bytes] = [
    b'{"num_hidden_layers": 0, "num_attention_heads": 8, "hidden_size": 64}',
    b'{"num_hidden_layers": -46, "num_attention_heads": 8, "hidden_size": 64}',
    b'{"num_hidden_layers": 1e400, "num_attention_heads": 8, "hidden_size": 64}',
    b'{"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 1' + b"0" * 400 + b"}",
    b'{"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 1' + b"0" * 5000 + b"}",
    b'{"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 64, "x": "\xff"}',
    b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 64, '
    b'"n_routed_experts": 8, "num_experts_per_tok": 8}',
    b'{"num_hidden_layers": 4, "num_attention_heads": 0, "hidden_size": 64}',
]


@pytest.mark.parametrize("content", BAD_CONFIGS, ids=range(len(BAD_CONFIGS)))
def test_a_bad_config_json_falls_back_with_a_note(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, content: bytes) -> None:
    hf_config(tmp_path).write_bytes(content)
    env = {"HF_HOME": str(tmp_path / "hf")}
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM46,
                            env=env)
    assert code == 0, err
    assert "--cpu-offload-gb -" not in compose_text(tmp_path)
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "plan", *GLM46, env=env)
    assert code == 0, err
    assert "config.json not used" in out, out


# --- M9: GLMKIT_HARDWARE ------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    '{"vendor": "cuda", "driver_version": "\u00b2", "gpus": []}',
    '{"vendor": "cuda", "gpus": [{"index": 0, "name": "H100", "memory_mib": 1e400}]}',
    '{"vendor": "cuda", "gpus": [{"index": 0, "name": "H100", "memory_mib": 1' + "0" * 30 + "}]}",
    '{"vendor": "cuda", "gpus": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"vendor": "cuda", "gpus": [{"index": 0, "name": "\\u001b]8;;http://x\\u0007H100", '
    '"memory_mib": 81559}]}',
    '{"vendor": "cuda", "gpus": [{"index": 0, "name": "H100", "memory_mib": 81559}], "x": 1' +
    "0" * 5000 + "}",
])
def test_a_hostile_hardware_file_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, content: str) -> None:
    path = tmp_path / "hw.json"
    path.write_text(content)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--model",
                            "zai-org/GLM-4.6", env={"GLMKIT_HARDWARE": str(path)})
    one_line_error(code, err, "GLMKIT_HARDWARE")
    assert "\x1b" not in err


# --- M3: one sanitizer where text is printed -------------------------------------------------

ESCAPES = ["\x1b[2J", "\x1b]8;;http://evil\x07link\x1b]8;;\x07", "\x9b31m", "\x07\x08"]


@pytest.mark.parametrize("text", ESCAPES)
def test_the_console_shows_control_characters_as_question_marks(
        text: str, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.table import Table

    from glmkit.cli.views import console, models_table, print_notes, say
    from glmkit.knowledge.catalog import generic_model

    out = console()
    out.print(models_table([generic_model(f"org/x{text}", local=False)]))
    print_notes(out, [f"note {text}"])
    table = Table()
    table.add_column(f"key{text}")
    out.print(table, f"line {text}")
    say(f"project {text}")
    shown = capsys.readouterr().out
    assert not any(c in shown for c in "\x1b\x9b\x07\x08"), repr(shown)
    assert "?" in shown or text == "\x07\x08"  # rich drops BEL and BS itself


def test_down_with_an_escape_in_the_project_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    for task in ("down", "logs", "status", "check"):
        code, out, err = run_task(monkeypatch, capsys, tmp_path, task, "--project",
                                  "x\x1b]0;pwned\x07")
        one_line_error(code, err, "Project name")
        assert "\x1b" not in out + err


# --- every reader of files the kit did not write, fed random bytes, sizes and file types ---

def _plant(path: Path, kind: str, data: bytes) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "bytes":
        path.write_bytes(data)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "link out":
        path.symlink_to("/etc/passwd")
    elif kind == "dangling link":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "link loop":
        path.symlink_to(path)
    elif kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":  # sparse: past every limit, costs no disk
        with path.open("wb") as handle:
            handle.truncate(80 * 1024 * 1024)


def _readers(root: Path) -> dict[str, tuple[Path, Any]]:
    """Each reader: the file it reads under `root`, and a call that reads it."""
    from glmkit.host.hardware import from_file
    from glmkit.host.hub import is_complete
    from glmkit.knowledge.catalog import resolve_model
    from glmkit.knowledge.recipe_schema import read_yaml
    from glmkit.knowledge.sizing import known_arch
    from glmkit.measure.bench_data import INFO, _content_revision, snapshot
    from glmkit.measure.results import list_runs

    hf = root / "hf"
    config = hf / "hub/models--zai-org--GLM-4.6/snapshots/x/config.json"
    data = root / "data"
    return {
        "recipe yaml": (root / "r.yaml", lambda p: read_yaml(p)),
        "HF cache config.json": (config, lambda p: known_arch(resolve_model("zai-org/GLM-4.6"),
                                                              hf)),
        "GLMKIT_HARDWARE": (root / "hw.json", lambda p: from_file(p)),
        "results meta.json": (root / "results/r1/meta.json",
                              lambda p: list_runs(root / "results")),
        "data set info": (data / INFO, lambda p: _content_revision(data, [])),
        "data set marker": (hf / "glmkit-complete/datasets--lmarena-ai--VisionArena-Chat.json",
                            lambda p: snapshot(hf)),
        "download marker": (hf / "glmkit-complete/zai-org--GLM-4.6.json",
                            lambda p: is_complete(hf, "zai-org/GLM-4.6")),
    }


READERS = list(_readers(Path("/")).keys())
KINDS = ["bytes", "fifo", "dir", "link out", "dangling link", "link loop", "/dev/zero", "huge"]


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS),
       data=st.one_of(st.binary(max_size=2048),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                                   | st.text(max_size=20),
                                   lambda inner: st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                                   max_leaves=20).map(lambda v: __import__("json").dumps(
                                       v).encode())))
def test_every_reader_refuses_or_reads_any_file(tmp_path_factory: pytest.TempPathFactory,
                                                reader: str, kind: str, data: bytes) -> None:
    """A reader returns, or raises its one documented error, promptly: never a hang, a
    MemoryError, a RecursionError or a file read through a link out of its folder."""
    from glmkit.errors import GlmkitError
    from glmkit.knowledge.recipe_schema import RecipeRefused

    root = tmp_path_factory.mktemp("reader")
    path, read = _readers(root)[reader]
    _plant(path, kind, data)
    try:
        result = finishes(lambda: read(path), 20)
    except (GlmkitError, RecipeRefused):
        return
    assert "root:" not in repr(result)  # /etc/passwd was not read


# --- M6: other users' homes ------------------------------------------------------------------

@pytest.mark.parametrize("option", [["--hf-cache", "/root/hf-cache"],
                                    ["--hf-cache", "/root"],
                                    ["--model", "zai-org/GLM-4.6V", "--vendor", "cuda", "--gpu",
                                     "h200", "--media-dir", "/root/.ssh"]])
def test_another_users_home_is_not_mounted(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path, option: list[str]) -> None:
    (tmp_path / "me").mkdir()
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *option,
                            env={"HOME": str(tmp_path / "me")})
    one_line_error(code, err, "another user's home")
    assert not (tmp_path / "compose").exists()


def test_other_homes_lists_root_and_home_but_not_mine(tmp_path: Path) -> None:
    from glmkit.policy import other_homes

    assert Path("/root") in other_homes(tmp_path)
    assert Path("/root") not in other_homes(Path("/root"))


# --- M10: JSON that does not parse is not admitted -------------------------------------------

def test_a_synced_flag_whose_json_does_not_parse_is_left_out() -> None:
    from glmkit.policy import Source, admit_args

    admitted = admit_args(["--speculative-config",
                           '{"method": "eagle", "model": "attacker/x\x01"}'],
                          Source.SYNCED_RECIPE)
    assert admitted.args == ()
    assert any("not valid JSON" in note for note in admitted.notes)


@pytest.mark.parametrize("value", ['{"method":"ngram"', "[1,2", '{"a":"\x01"}'])
def test_a_flag_whose_json_does_not_parse_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, value: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", "--",
                            "--speculative-config", value)
    one_line_error(code, err, "not valid JSON")


# --- M7: `invoke report` from a hostile run folder ------------------------------------------

HUGE = int("9" * 400)


def _hostile_run(results: Path, name: str, meta: dict[str, Any], point: dict[str, Any],
                 metrics: Any = None) -> None:
    import json

    folder = results / name
    (folder / "points").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "points" / "batch-0001.json").write_text(json.dumps(point))
    if metrics is not None:
        (folder / "metrics").mkdir()
        (folder / "metrics" / "batch-0001.json").write_text(json.dumps(metrics))


GPU_META = {"model": "zai-org/GLM-4.6", "vendor": "cuda", "batches": [1],
            "serve_args": ["--tensor-parallel-size", "8"],
            "workload": {"name": "prompt-heavy"},
            "hardware": {"gpus": [{"name": "NVIDIA H200", "memory_mib": 143771, "index": 0}]}}
HOSTILE_RUNS: list[tuple[dict[str, Any], dict[str, Any], Any]] = [
    ({**GPU_META, "max_model_len": HUGE}, {"output_throughput": HUGE, "mean_tpot_ms": 1.0},
     None),
    ({**GPU_META, "workload": {"name": "x", "input_len": "abc", "output_len": [1]}},
     {"mean_tpot_ms": 2.0}, None),
    (GPU_META, {"max_concurrency": "many", "mean_tpot_ms": 2.0}, None),
    (GPU_META, {"max_concurrency": HUGE, "mean_tpot_ms": 2.0}, None),
    (GPU_META, {"mean_tpot_ms": 2.0},
     {"samples": [{"t": "x"}, 5, {"t": 1, "running": "a"}, {"t": 2, "waiting": [1]}],
      "summary": [1]}),
    ({**GPU_META, "label": "$\\frac{$ bad $x^$"}, {"output_throughput": 1.0}, None),
    ({**GPU_META, "label": "\x1b]8;;http://evil\x07run"}, {"output_throughput": 1.0},
     {"samples": [{"t": 0, "running": 1}, {"t": 1, "running": 2}], "summary": {}}),
    ({**GPU_META, "hardware": {"gpus": [{"name": "H200", "memory_mib": HUGE}]}},
     {"mean_tpot_ms": 1.0, "output_throughput": 1e308 * 10}, None),
]


@pytest.mark.parametrize(("meta", "point", "metrics"), HOSTILE_RUNS,
                         ids=range(len(HOSTILE_RUNS)))
def test_report_from_a_hostile_run_folder(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          meta: dict[str, Any], point: dict[str, Any],
                                          metrics: Any) -> None:
    _hostile_run(tmp_path / "results", "20260101-000000-r", meta, point, metrics)
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report", "--runs",
                              "20260101-000000-r", "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert "Traceback" not in out + err and "\x1b" not in out + err


def test_a_recipe_with_a_nul_is_refused_not_a_traceback(tmp_path: Path) -> None:
    """Found by the property test above: yaml's reader refuses a NUL while the loader is
    made, before the parse that caught YAML errors."""
    from glmkit.knowledge.recipe_schema import RecipeRefused, read_yaml

    (tmp_path / "r.yaml").write_bytes(b"\x00")
    with pytest.raises(RecipeRefused, match="not valid YAML"):
        read_yaml(tmp_path / "r.yaml")


# --- Low: strings YAML 1.2 reads as numbers are quoted --------------------------------------

@pytest.mark.parametrize("value", ["1e308", "0o17", "0x1F", ".NaN", ".inf", "~"])
def test_a_value_yaml_12_reads_as_a_number_is_written_quoted(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        value: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", "--",
                            "--chat-template-content-format", value)
    assert code == 0, err
    text = compose_text(tmp_path)
    assert f"--chat-template-content-format\n    - '{value}'" in text, text


def test_k8s_export_quotes_them_too(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "export", "k8s", "--project", "k",
                            "--model", "zai-org/GLM-4.7", "--vendor", "cuda", "--gpu", "h200",
                            "--", "--chat-template-content-format", "0o17")
    assert code == 0, err
    assert "'0o17'" in (tmp_path / "compose" / "k.k8s.yaml").read_text()


# --- Low: an absurd shm processor cache; the tiny model's config from the working dir ----

def test_an_absurd_processor_cache_is_refused_not_an_absurd_shm(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            "--vendor", "cpu", "--model", "glmkit/glm-tiny-vision", "--",
                            "--mm-processor-cache-type", "shm",
                            "--mm-processor-cache-gb", "1e20")
    one_line_error(code, err, "--mm-processor-cache-gb 1e+20")
    assert not (tmp_path / "compose").exists() or not list((tmp_path / "compose").iterdir())


def test_plan_does_not_read_a_tiny_models_config_from_the_working_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from glmkit.knowledge.catalog import resolve_model
    from glmkit.knowledge.sizing import ARCH, known_arch

    planted = tmp_path / "models" / "glm-tiny"
    planted.mkdir(parents=True)
    (planted / "config.json").write_text(
        '{"num_hidden_layers": 77, "num_attention_heads": 4, "hidden_size": 64}')
    monkeypatch.chdir(tmp_path)
    arch = known_arch(resolve_model("glmkit/glm-tiny"))
    assert arch == ARCH["glm-tiny"] and arch.layers != 77


# --- review: empty or unbounded numbers -----------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (("tune-moe", "--budget", ""), "--budget: expected a number"),
    (("tune-moe", "--budget", "nan"), "--budget: expected a finite number"),
    (("tiny-model", "--layers", ""), "--layers: expected a number"),
    (("bench-data", "OUT", "--rows", ""), "--rows: expected a number"),
    (("tune", "--budget", "inf"), "--budget: expected a finite number"),
    (("tune", "--budget", "1e400"), "--budget: expected a finite number"),
])
def test_an_empty_or_infinite_number_is_one_line_before_anything_runs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        argv: tuple[str, ...], message: str) -> None:
    """`tune-moe --budget ''` was a TypeError traceback; `tune --budget inf` started an
    unbounded tune; `tiny-model --layers ''` sent 'None' into a container (review)."""
    import subprocess

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"started a program: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv)
    one_line_error(code, err, message)
