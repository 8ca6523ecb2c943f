"""One point of a sweep: `vllm bench serve` inside the serving container, via
`docker exec`.

Running the client in the server's own container means the same vLLM version and
tokenizer on both ends and no client install on the host. The point's JSON is copied
out with `docker cp` into the run's folder (`results` makes the run; `bench` loops over
the points); a point that fails is recorded as a failure.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.errors import mask
from glmkit.files import Unreadable, read_json
from glmkit.measure.gpu_telemetry import Sampler
from glmkit.measure.results import MAX_FILE_BYTES, Run, point_name
from glmkit.measure.server_metrics import MetricsSampler
from glmkit.measure.workloads import VISIONARENA, Point, Workload
from glmkit.process import child_env, run, stream_lines
from glmkit.run.server import RunningServer

CONTAINER_RESULTS = "/tmp/glmkit-bench"
FIT_MARGIN = 64  # tokens left for the chat template and special tokens
# Output of `vllm bench serve` that says the VisionArena data set could not be fetched.
OFFLINE_MARKERS = ("OfflineModeIsEnabled", "ConnectionError", "couldn't connect", "Max retries",
                   "Failed to resolve", "LocalEntryNotFoundError", "DatasetNotFoundError")


def fit_lengths(input_len: int, output_len: int, max_model_len: int) -> tuple[int, int, bool]:
    """Scale input and output down, keeping their ratio, when they exceed the context."""
    budget = max_model_len - FIT_MARGIN
    if input_len + output_len <= budget:
        return input_len, output_len, False
    scale = budget / (input_len + output_len)
    return max(1, int(input_len * scale)), max(1, int(output_len * scale)), True


def bench_argv(target: RunningServer, workload: Workload, point: Point, result_name: str,
               dataset: str | None = None, seed: int = 0) -> list[str]:
    """`vllm bench serve`'s words. Every value is joined to its option (`--model=NAME`),
    so no value, whichever file or label it came from, is read as an option of its own;
    only `--goodput` takes separate words, each `ttft|tpot|e2el:MS` (workloads.Point)."""
    options: list[tuple[str, object]] = [
        ("--model", target.served_model), ("--tokenizer", target.model_ref),
        ("--num-prompts", point.num_prompts), ("--request-rate", point.request_rate),
        ("--seed", seed)]
    switches = ["--save-result"]
    options += [("--result-dir", CONTAINER_RESULTS), ("--result-filename", result_name)]
    dataset = dataset or {"visionarena": "hf", "random-mm": "random-mm"}.get(workload.dataset,
                                                                           "random")
    if workload.vision:
        options += [("--backend", "openai-chat"), ("--endpoint", "/v1/chat/completions")]
    if dataset == "hf" and workload.dataset_path:
        # A local folder in the Hub repo's layout, parsed as VisionArena (bench_data.py).
        options += [("--dataset-name", "hf"), ("--dataset-path", workload.dataset_path),
                    ("--hf-name", VISIONARENA), ("--hf-split", "train"),
                    ("--hf-output-len", workload.output_len)]
    elif dataset == "hf":
        options += [("--dataset-name", "hf"), ("--dataset-path", VISIONARENA)]
    elif dataset == "random-mm":
        options += [("--dataset-name", "random-mm"),
                    ("--random-input-len", workload.input_len),
                    ("--random-output-len", workload.output_len),
                    ("--random-mm-base-items-per-request", 1),
                    ("--random-mm-limit-mm-per-prompt", '{"image": 1, "video": 0}')]
    else:
        options += [("--dataset-name", "random"), ("--random-input-len", workload.input_len),
                    ("--random-output-len", workload.output_len)]
    if target.bench_url:
        options.append(("--base-url", target.bench_url))
    if point.max_concurrency:
        options.append(("--max-concurrency", point.max_concurrency))
    if workload.ignore_eos:
        switches.append("--ignore-eos")
    argv = ["vllm", "bench", "serve", *(f"{name}={value}" for name, value in options),
            *switches]
    if point.goodput:  # last: argparse's nargs="+" takes the words up to the next option
        argv += ["--goodput", *point.goodput]
    return argv


def offline_env(workload: Workload) -> list[str]:
    """`docker exec` options for a data set read from a local folder: never the Hub, and
    the datasets cache in the container's own /tmp (the HF cache may be read-only)."""
    if not workload.dataset_path:
        return []
    return ["-e", "HF_DATASETS_OFFLINE=1", "-e", "HF_HUB_OFFLINE=1",
            "-e", "HF_DATASETS_CACHE=/tmp/glmkit-hf-datasets"]


@dataclass(frozen=True)
class PointOutcome:
    batch: int
    ok: bool
    result: dict[str, Any] | None
    detail: str


def run_point(target: RunningServer, workload: Workload, point: Point, run_: Run,
              on_line: Callable[[str], None]) -> PointOutcome:
    """One point inside the container; saves its JSON (or its failure) into the run."""
    result_name = point_name(point.batch)
    dataset = None
    keys = [target.api_key]
    for attempt in range(2):
        argv = bench_argv(target, workload, point, result_name, dataset=dataset)
        # OPENAI_API_KEY is named without a value: docker passes it on from this process.
        exec_argv = ["docker", "exec", "-e", "OPENAI_API_KEY", *offline_env(workload),
                     target.container, *argv]
        sampler = Sampler().start()
        server = MetricsSampler(base_url=target.base_url, api_key=target.api_key).start()
        started = time.time()
        # `vllm bench serve` sends OPENAI_API_KEY as the bearer token.
        exec_env = child_env({"OPENAI_API_KEY": target.api_key} if target.api_key else None)
        # Whatever the client prints, the key is never shown or saved with a failure.
        code, tail = stream_lines(exec_argv, lambda line: on_line(mask(line, keys)),
                                  env=exec_env)
        tail = [mask(line, keys) for line in tail]
        telemetry, metrics = sampler.stop(), server.stop()
        offline = any(marker in line for line in tail for marker in OFFLINE_MARKERS)
        if code != 0 and workload.dataset == "visionarena" and offline and attempt == 0 \
                and workload.dataset_path is None:  # `vision` only: visionarena never guesses
            on_line("VisionArena could not be fetched: falling back to random multimodal data")
            dataset = "random-mm"
            continue
        break
    if telemetry:
        run_.save_telemetry(point.batch, telemetry)
    if metrics:
        run_.save_metrics(point.batch, metrics)
    if code != 0:
        run_.save_failure(point.batch, {"batch": point.batch, "exit_code": code,
                                        "argv": argv, "output_tail": tail})
        return PointOutcome(point.batch, False, None, tail[-1] if tail else f"exit {code}")
    with tempfile.TemporaryDirectory() as tmp:
        run(["docker", "cp", f"{target.container}:{CONTAINER_RESULTS}/{result_name}", tmp])
        # Written in the container: a plain file of at most half what a report reads (a
        # link `docker cp` copied as a link is not followed), a JSON object.
        try:
            result = read_json(Path(tmp) / result_name, MAX_FILE_BYTES // 2)
            why = "is not a JSON object"
        except Unreadable as err:
            result, why = None, str(err)
    run(["docker", "exec", target.container, "rm", "-f",
         f"{CONTAINER_RESULTS}/{result_name}"], check=False)
    if not isinstance(result, dict):
        run_.save_failure(point.batch, {"batch": point.batch, "exit_code": code, "argv": argv,
                                        "output_tail": tail, "result": f"the file {why}"})
        return PointOutcome(point.batch, False, None, f"its result file {why}")
    result["glmkit"] = {"argv": argv, "started": started, "finished": time.time(),
                        "dataset": dataset or workload.dataset,
                        "dataset_revision": workload.dataset_revision}
    run_.save_point(point.batch, result)
    failed = result.get("failed") if type(result.get("failed")) is int else 0
    throughput = result.get("output_throughput")
    detail = (f"{throughput if type(throughput) in (int, float) else 0:.1f} out tok/s"
              + (f", {failed} FAILED requests" if failed else ""))
    return PointOutcome(point.batch, failed == 0, result, detail)


SUMMARY_FIELDS = [
    ("completed", "ok", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
    ("request_throughput", "req/s", "{:.2f}"),
    ("output_throughput", "out tok/s", "{:.1f}"),
    ("total_token_throughput", "total tok/s", "{:.1f}"),
    ("mean_ttft_ms", "TTFT mean", "{:.1f}"),
    ("median_ttft_ms", "TTFT med", "{:.1f}"),
    ("p99_ttft_ms", "TTFT p99", "{:.1f}"),
    ("mean_tpot_ms", "TPOT mean", "{:.2f}"),
    ("median_tpot_ms", "TPOT med", "{:.2f}"),
    ("p99_tpot_ms", "TPOT p99", "{:.2f}"),
    ("mean_itl_ms", "ITL mean", "{:.2f}"),
    ("p99_itl_ms", "ITL p99", "{:.2f}"),
]
