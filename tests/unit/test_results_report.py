from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmkit.errors import UsageError
from glmkit.measure.gpu_telemetry import parse_nvidia, parse_rocm, summarize
from glmkit.measure.report import compare_rows, write_csv, write_plots
from glmkit.measure.results import (
    Series,
    create_run,
    list_runs,
    load_reference,
    open_run,
    parse_bench_text,
    read_meta,
    reference_names,
)

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"


def test_runs_are_append_only_and_resumable(tmp_path: Path) -> None:
    run = create_run(tmp_path, read_meta({"batches": [1, 16, 64], "model": "m"}, "sweep"))
    run.save_point(1, {"output_throughput": 10.0})
    assert run.missing() == [16, 64]
    with pytest.raises(UsageError, match="never overwritten"):
        run.save_point(1, {"output_throughput": 99.0})
    assert json.loads((run.path / "points" / "batch-0001.json").read_text()) == \
        {"output_throughput": 10.0}
    run.save_failure(16, {"exit_code": 1})
    run.save_failure(16, {"exit_code": 1})
    assert len(list((run.path / "failures").iterdir())) == 2
    again = open_run(tmp_path, run.run_id[:15])
    assert again.missing() == [16, 64]
    second = create_run(tmp_path, read_meta({"batches": [1]}, "sweep"))
    assert second.path != run.path
    assert len(list_runs(tmp_path)) == 2
    with pytest.raises(UsageError, match="several runs"):
        open_run(tmp_path, run.run_id[:8])


def test_reference_runs_parse_the_recipes_text() -> None:
    assert set(reference_names()) == {"glm45-fp8-prompt-heavy-16",
                                      "glm45v-fp8-visionarena-rate20",
                                      "glm45v-fp8-visionarena-concurrency1",
                                      # measured by scripts/gpu_truth.py (docs/gpu.md)
                                      *(f"h200-glm47flash-dummy-c{c}" for c in (1, 16, 64)),
                                      *(f"h100-glm47flash-dummy-c{c}" for c in (1, 16, 64)),
                                      *(f"h200-glm47flash-dummy-tunedmoe-c{c}"
                                        for c in (16, 64))}
    ref = load_reference("glm45-fp8-prompt-heavy-16")
    point = ref.points[16]
    assert point["completed"] == 16
    assert point["mean_tpot_ms"] == 22.35
    assert point["output_throughput"] == 651.58
    assert ref.meta.model == "zai-org/GLM-4.5-FP8"
    vision = load_reference("glm45v-fp8-visionarena-concurrency1")
    assert vision.points[1]["max_concurrency"] == 1
    assert vision.points[1]["failed"] == 0


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds not beside the checkout")
def test_reference_matches_the_seed_verbatim() -> None:
    seed = (SEEDS / "000_4cf83d8a102c938b.txt").read_text()
    parsed = parse_bench_text(seed)
    assert parsed == load_reference("glm45-fp8-prompt-heavy-16").points[16]


def test_compare_csv_and_plots(tmp_path: Path) -> None:
    a = Series("a", read_meta({"model": "m", "workload": {"name": "balanced"}}, "a"),
               {1: {"output_throughput": 100.0, "mean_tpot_ms": 10.0},
                16: {"output_throughput": 800.0, "mean_tpot_ms": 20.0}})
    b = Series("b", read_meta({"model": "m"}, "b"),
               {16: {"output_throughput": 1000.0, "mean_tpot_ms": 16.0}})
    rows = compare_rows(a, b)
    assert rows == [(16, {"output_throughput": 1.25, "mean_tpot_ms": 0.8})]
    csv_text = write_csv([a, b], tmp_path / "r.csv").read_text().splitlines()
    assert csv_text[0].startswith("run_id,label,model,vendor,workload,batch,completed")
    assert len(csv_text) == 4
    png = write_plots([a, b], tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_telemetry_parsers() -> None:
    samples = parse_nvidia("0, 87, 70123, 512.30\n1, 91, 70400, 530.10\n")
    assert samples[1] == {"gpu": 1.0, "util_pct": 91.0, "mem_used_mib": 70400.0,
                          "power_w": 530.1}
    assert summarize(samples) == {"mean_util_pct": 89.0, "max_mem_used_mib": 70400.0,
                                  "mean_power_w": 521.2}
    rocm = parse_rocm(json.dumps({"card0": {"GPU use (%)": "95",
                                            "VRAM Total Used Memory (B)": str(2**30 * 100),
                                            "Current Socket Graphics Package Power (W)": "650.0"}}))
    assert rocm[0]["util_pct"] == 95.0 and rocm[0]["mem_used_mib"] == 102400.0
    assert parse_nvidia("[N/A]") == [] and parse_rocm("not json") == []


def test_gpu_runs_show_tpot_against_the_bandwidth_bound() -> None:
    from rich.console import Console

    from glmkit.measure.report import results_table, tpot_bound

    meta = {"model": "zai-org/GLM-4.5-FP8", "vendor": "cuda",
            "serve_args": ["zai-org/GLM-4.5-FP8", "--tensor-parallel-size", "8"],
            "workload": {"input_len": 8000, "output_len": 1000},
            "hardware": {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}] * 8}}
    run = Series("h100", read_meta(meta, "h100"), {16: {"mean_tpot_ms": 22.35, "failed": 0}})
    bound = tpot_bound(run, 16, run.points[16])
    assert bound is not None and 5 < bound < 22.35
    console = Console(width=250, record=True)
    console.print(results_table([run]))
    text = console.export_text()
    assert "bound/TPOT" in text and f"{bound / 22.35:.2f}" in text
    assert tpot_bound(Series("cpu", read_meta({**meta, "vendor": "cpu"}, "cpu"), run.points), 16,
                      run.points[16]) is None


# --- results metadata: one loader for old, current and reference runs ----------------

OLD_META = {  # a run written before meta had a version: GPUs without memory, TP flag last
    "label": "h100-old", "model": "zai-org/GLM-4.5-FP8", "vendor": "cuda",
    "serve_args": ["zai-org/GLM-4.5-FP8", "--max-model-len", "65536",
                   "--tensor-parallel-size"],
    "workload": {"name": "prompt-heavy", "input_len": 8000, "output_len": 1000},
    "mode": "prompts", "batches": [1, 16],
    "hardware": {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]},
}


def _old_run(tmp_path: Path, meta: dict[str, object], name: str) -> Path:
    folder = tmp_path / name
    (folder / "points").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "points" / "batch-0016.json").write_text(json.dumps(
        {"mean_tpot_ms": 22.0, "output_throughput": 600.0, "failed": 0}))
    return folder


def test_report_of_a_reference_run_is_a_table_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from tests.unit.test_cli_trust import run_task

    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report", "--runs",
                              "ref:glm45-fp8-prompt-heavy-16", "--out", str(tmp_path))
    assert code == 0, err
    assert "Traceback" not in err
    assert "651.6" in out  # its output throughput
    assert (tmp_path / "report.csv").is_file()


def test_report_shows_long_reference_names_whole(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """Both H200 runs at concurrency 16 were shown as 'ref:h200-…': which was tuned could
    not be told. The names are whole, the table first and within the console's width."""
    from tests.unit.test_cli_trust import run_task

    names = ["ref:h200-glm47flash-dummy-tunedmoe-c16", "ref:h200-glm47flash-dummy-c16",
             "ref:glm45v-fp8-visionarena-concurrency1"]
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report",
                              *[a for n in names for a in ("--runs", n)], "--out", str(tmp_path))
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == names
    assert out.lstrip().startswith("vllm bench serve")  # the table still comes first
    assert max(len(line) for line in out.splitlines() if "│" in line or "━" in line) <= 160


def test_old_and_hand_edited_meta_load_and_resume(tmp_path: Path) -> None:
    from rich.console import Console

    from glmkit.measure.report import results_table
    from glmkit.measure.results import load_all

    _old_run(tmp_path, OLD_META, "20250101-000000-old")
    run = open_run(tmp_path, "20250101-000000-old")
    assert run.meta.version == 1
    assert run.meta.tensor_parallel == 1  # a flag with no value is no TP size
    assert run.meta.workload is not None and run.meta.workload.ignore_eos  # filled in
    assert [p.batch for p in run.meta.points] == [1, 16]  # rebuilt from batches
    assert run.missing() == [1]
    series = load_all(tmp_path, [])
    console = Console(width=250, record=True)
    console.print(results_table(series))
    assert "h100-old" in console.export_text()


def test_reports_key_runs_by_id_not_label(tmp_path: Path) -> None:
    from rich.console import Console

    from glmkit.measure.report import results_table
    from glmkit.measure.results import load_all

    tp8 = {**OLD_META, "serve_args": ["m", "--tensor-parallel-size", "8"],
           "hardware": {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}]}}
    tp4 = {**tp8, "serve_args": ["m", "--tensor-parallel-size=4"]}
    _old_run(tmp_path, tp8, "20250101-000000-a")
    _old_run(tmp_path, tp4, "20250101-000001-b")
    series = load_all(tmp_path, [])
    assert [s.meta.tensor_parallel for s in series] == [8, 4]
    console = Console(width=300, record=True)
    console.print(results_table(series))
    text = console.export_text()
    # Same label twice: each row names its run id, and each has its own bound.
    assert "20250101-000000-a" in text and "20250101-000001-b" in text
    from glmkit.measure.report import tpot_bound

    bounds = [tpot_bound(s, 16, s.points[16]) for s in series]
    assert bounds[0] is not None and bounds[1] is not None and bounds[0] < bounds[1]
    assert all(f"{b:.2f}" in text for b in bounds if b is not None)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "x" * 200, "a b"])
def test_labels_and_run_ids_are_plain_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="plain name"):
        create_run(tmp_path / "results", read_meta({"batches": [1]}, name))
    with pytest.raises(UsageError):
        open_run(tmp_path / "results", name)
    assert not any(p for p in tmp_path.rglob("*") if p.is_file())


def test_bench_label_outside_results_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from tests.unit.test_cli_trust import run_task

    code, _, err = run_task(monkeypatch, capsys, tmp_path, "bench", "--label", "../../x",
                            "--project", "no-such-project")
    assert code == 2
    assert "plain name" in err and "Traceback" not in err


# --- results make runs: one typed RunMeta, written and read -------------------------

V2_KEYS = ["version", "label", "glmkit_version", "glmkit_commit", "created", "model",
           "vendor", "image", "image_digest", "serve_args", "max_model_len",
           "prefix_caching", "workload", "mode", "batches", "points", "hardware", "container"]


def test_a_new_run_writes_meta_version_2_and_reads_it_back_the_same(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from glmkit.measure import results
    from glmkit.measure.results import HardwareMeta, start_run
    from glmkit.measure.workloads import WORKLOADS, sweep_points
    from glmkit.run.server import RunningServer
    from tests.unit.helpers import gpus

    monkeypatch.setattr(results, "image_digest", lambda ref: f"{ref}@sha256:abc")
    monkeypatch.setattr(results, "container_image_digest", lambda container: None)
    monkeypatch.setattr(results, "_git_commit", lambda root: "deadbeef")
    facts = results.RunFacts("deadbeef", "img:1@sha256:abc")
    target = RunningServer(container="glmkit-vllm-1", served_model="zai-org/GLM-4.5-Air",
                           model_ref="/models/air", max_model_len=65536, vendor="cuda",
                           image="img:1", serve_args=("m", "--tensor-parallel-size", "2"),
                           base_url="http://127.0.0.1:8000", api_key="secret")
    points = sweep_points([1, 16], "concurrency", request_rate="inf", goodput=("ttft:500",))
    # The host's facts are read once, before the run, and handed to it.
    assert results.read_run_facts(target, tmp_path) == facts
    run = start_run(tmp_path, target, WORKLOADS["balanced"], "concurrency", points,
                    HardwareMeta.of(gpus("cuda", 2)), facts)
    assert run.run_id.endswith("-GLM-4.5-Air-cuda-balanced")
    written = json.loads((run.path / "meta.json").read_text())
    assert list(written) == V2_KEYS and written["version"] == 2
    assert written["hardware"]["gpus"][1] == {"index": 1, "name": "NVIDIA H100 80GB HBM3",
                                              "memory_mib": 81559}
    assert list(written["hardware"]) == ["vendor", "description", "gpus", "cpu_count"]
    assert written["batches"] == [1, 16] and written["points"][0]["goodput"] == ["ttft:500"]
    assert written["image_digest"] == "img:1@sha256:abc" and written["prefix_caching"]
    assert "secret" not in (run.path / "meta.json").read_text()
    assert open_run(tmp_path, run.run_id).meta == run.meta  # what is written is what is read
    assert run.meta.tensor_parallel == 2 and run.meta.hardware.gpus[0].memory_mib == 81559


def test_old_meta_reads_into_the_same_shape_with_unknowns_left_empty() -> None:
    meta = read_meta(OLD_META, "x")
    assert meta.version == 1 and meta.glmkit_commit is None and meta.prefix_caching is None
    assert meta.hardware.gpus[0].memory_mib is None and meta.hardware.gpus[0].index is None
    assert read_meta({"hardware": "8 × H100"}, "x").hardware.description == "8 × H100"
    assert read_meta(meta.to_json(), "y") == meta
