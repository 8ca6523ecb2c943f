"""Help text of the tasks' options: plain data, imported when `invoke --list` runs."""

from __future__ import annotations

# The serve tasks' options are the settings: their help and defaults come from
# glmkit.host.settings, declared once there.
import inspect
from collections.abc import Callable
from typing import Any

from glmkit.host.settings import BOOL_SETTINGS, SERVE_HELP, option_help

__all__ = ["BOOL_OPTIONS", "HELP", "SERVE_HELP", "task_help"]
BOOL_OPTIONS = BOOL_SETTINGS

PROJECT_HELP = SERVE_HELP["project"]
NODES_HELP = "the --nodes of a multi-machine `up` (head=ssh://h1,w1=ssh://h2), to reach each"
MEMBER_HELP = ("a model group's member to aim at, through the group's door (its model id, "
               "served name or alias; default: the first)")

HELP: dict[str, dict[str, str]] = {
    "check": {"project": PROJECT_HELP, **option_help("check"), "model": MEMBER_HELP,
              "verbose": "print every case's row, not only the failing ones"},
    "down": {"project": PROJECT_HELP, "nodes": NODES_HELP},
    "logs": {"project": PROJECT_HELP, "follow": "keep streaming", **option_help("logs"),
             "nodes": NODES_HELP},
    "status": {"json": "print JSON (one object per container) instead of a table",
            "nodes": NODES_HELP, "project": "with --nodes: the cluster's project"},
    "build": {**option_help("build"), "model": "build the image this "
            "catalog model uses (a transformers overlay where its image lacks one)",
            "vllm_version": "vLLM release of the official image to build on",
            "force": "rebuild even when up to date",
            "ca_cert": "extra CA certificate for the image (repeatable)"},
    "pull": {**option_help("pull"),
            "model": "pull the image this catalog model uses (its recipe's pin, if any)",
            "vllm_version": "vLLM release to pull (default: the newest stable)",
            "cuda12": "the CUDA 12 (-cu129) tag"},
    "login": {"token": "the token; visible to other users in `ps`: prefer --token-file, "
                       "HF_TOKEN or the hidden prompt (the default without HF_TOKEN)",
              "token_file": "read the token from this file (- for standard input)"},
    "tiny_model": {**option_help("tiny_model"),
            "force": "regenerate even if present",
            "vision": "the tiny GLM-4.5V (glmkit/glm-tiny-vision): MoE + vision tower"},
    "bench": {"project": PROJECT_HELP, **option_help("bench"), "model": MEMBER_HELP,
            "off_project": "agentic: the project serving the same model with --bench-mode "
                           "(no prefix caching) to compare against",
            "input_len": "prompt tokens (overrides the workload's)",
            "output_len": "output tokens (overrides the workload's)",
            "num_prompts": "prompts per point in concurrency mode; in prompts mode, the batch",
            "label": "name for this run in reports (default: model-vendor-workload)",
            "resume": "finish the missing points of an earlier run (its id)",
            "dataset_path": "--workload visionarena: a folder in VisionArena-Chat's format "
                            "(data/*.parquet; `invoke bench-data` writes one); default: the "
                            "HF cache after `invoke download --dataset`"},
    "eval": {"project": PROJECT_HELP, **option_help("eval"),
            "dataset": "gsm8k (openai/gsm8k, after `invoke download --dataset gsm8k`) or "
                       "tiny-arith (the tiny model's set); default: tiny-arith for the tiny "
                       "model, else gsm8k, or the data set of --against's reference",
            "against": "compare with this reference: a model whose baseline was saved here "
                       "(glmkit/glm-tiny), or a published reference's id or model "
                       "(vllm-ci-glm-4.7-flash); default: this model's baseline and rows",
            "save_baseline": "save this run as the model's baseline here: later runs (after "
                             "a vLLM upgrade, a new image, a flag change) compare with it",
            "model": "the model name to ask for, one the server answers to (default: the "
                     "served model)",
            "label": "name for this run (default: model-dataset-protocol)",
            "verbose": "print every question's row, not only the summary line"},
    "tune_moe": {"project": PROJECT_HELP, **option_help("tune_moe")},
    "bench_data": {"out": "new folder for the data set (data/train-*.parquet)",
            **option_help("bench_data")},
    "report": {"runs": "run ids, folders or ref:NAME (default: every run); repeatable",
            "compare": "print B / A ratios for exactly two runs",
            "out": "folder for report.png and report.csv (default results/reports/<time>)"},
    "doctor": {"vendor": SERVE_HELP["vendor"],
            "model": "check disk space and Hub access for this model",
            "port": SERVE_HELP["port"],
            "host": SERVE_HELP["host"]},
    "download": {"model": "catalog id or Hugging Face repo id",
            "dataset": "a data set instead: lmarena-ai/VisionArena-Chat (`bench`) or gsm8k "
                       "(openai/gsm8k, `eval`)",
            "revision": "branch, tag or commit (default: the main branch)",
            "hf_cache": SERVE_HELP["hf_cache"]},
    "plan": {"model": "catalog id (default: the tiny model); repeat it for a model group",
            "sleep_level": SERVE_HELP["sleep_level"],
            "vendor": "cuda, rocm (default: what this machine has); picks the reference GPU "
                      "when none is named or detected",
            "gpu_count": "number of GPUs (default: detected, else the GPU's 8-GPU node)",
            "gpu": "GPU type: h100, h200, b200, b300, mi300x, mi325x, mi355x (default: detected)",
            "gpu_mem": "GiB per GPU (nvidia-smi's MiB / 1024), for a GPU type glmkit does "
                       "not know (with or without --gpu)",
            "strategy": "size for this recipe strategy (default: the recommendation for --goal)",
            "tp": "check this tensor-parallel size instead of choosing one",
            "gpu_memory_utilization": SERVE_HELP["gpu_memory_utilization"],
            "nodes": "plan for this many machines of --gpu-count GPUs each",
            **option_help("plan")},
    "recipes": {"action": "list, sync or diff",
            "from_": "sync from this folder, git URL or .tar.gz URL "
                     "(default: the vllm-project/recipes repository)"},
}
HELP["render"] = {**SERVE_HELP, **option_help("render")}
HELP["up"] = {**SERVE_HELP, "api_key": "API key clients must send (or VLLM_API_KEY); required "
              "with a non-loopback --host; visible to other users in `ps`: prefer "
              "--api-key-file or VLLM_API_KEY",
              "api_key_file": "read the API key from this file (- for standard input)",
              "eval": "after health, gate GSM8K accuracy (`invoke eval`'s default protocol) "
                      "on the model's set, or a seeded sample of N questions: --eval [N]",
              **option_help("up")}
HELP["export"] = {**SERVE_HELP, "target": "what to export: k8s"}
HELP["config"] = dict(SERVE_HELP)
HELP["tune"] = {**SERVE_HELP,
                **option_help("tune"),
                "slo": "bounds a request must meet to count, in ms: ttft-p99=2000,"
                       "tpot-p99=50 (vllm bench serve --goodput); default: throughput",
                "resume": "finish an earlier tune (its id under results/tune/)"}


def task_help(fn: Callable[..., Any], help: dict[str, str]) -> dict[str, str]:
    """A task's option help with each default read from its signature, never by hand."""
    out = dict(help)
    for name, param in inspect.signature(fn).parameters.items():
        default = param.default
        if name in out and default not in (None, False, (), inspect.Parameter.empty) \
                and "default" not in out[name] and isinstance(default, str | int | float):
            out[name] += f" (default {default})"
    return out
