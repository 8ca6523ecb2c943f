"""Help text of the tasks' options: plain data, imported when `invoke --list` runs."""

from __future__ import annotations

# Options shared by the serve tasks; each maps to a glmkit.host.settings.Settings field.
SERVE_HELP = {
    "vendor": "cuda (nvidia), rocm (amd) or cpu; default: what this machine has",
    "model": "catalog id (`invoke models`), HF repo id or model folder; default glmkit/glm-tiny",
    "image": "image to run instead of the vendor's pinned one",
    "vllm_version": "vLLM version inside --image, so the rendered flags match it",
    "project": "compose project name (default glmkit)",
    "host": "address the port is published on (default 127.0.0.1)",
    "port": "host port (default 8000)",
    "tp": "tensor-parallel size (default: the recipe's for the model)",
    "dp": "data-parallel size (default 1)",
    "gpus": "GPU indexes, e.g. 0,1,2,3 (default: all)",
    "gpu_memory_utilization": "fraction of GPU memory for vLLM (default 0.9)",
    "max_model_len": "context length (default 65536, capped at the model's limit)",
    "max_num_batched_tokens": "vLLM --max-num-batched-tokens",
    "mtp": "MTP speculative decoding (GLM-4.5/4.6/4.7 text models)",
    "mtp_tokens": "MTP draft tokens (default: the recipe's: 1 for GLM-4.x, 3 for 5/5.1, 5 for 5.2)",
    "gpu": "plan for this GPU instead of the detected one: h100, h200, b200, b300, mi300x, "
           "mi325x, mi355x, or any name with --gpu-mem",
    "gpu_count": "GPUs per node to plan for (default: detected, else the GPU's 8-GPU node)",
    "gpu_mem": "GB per GPU, for a GPU the recipes' hardware list lacks",
    "strategy": "the recipes' strategy: single_node_tp (default), single_node_tep, "
                "single_node_dep, multi_node_tp, multi_node_tp_pp, multi_node_tep, multi_node_dep",
    "cuda12": "use vLLM's CUDA 12 (-cu129) images; automatic with an NVIDIA driver below 580",
    "bench_mode": "serve with --no-enable-prefix-caching, as the recipes benchmark",
    "privileged": "ROCm: every device and capability (privileged, /dev/mem, SYS_ADMIN)",
    "enforce_eager": "skip torch.compile and graph capture (faster start, slower serving)",
    "media_dir": "V models: host folder served read-only as local media",
    "hf_cache": "host Hugging Face cache (default $HF_HOME or ~/.cache/huggingface)",
    "health_timeout": "seconds to wait for /health (default sized to the model)",
    "restart": "Docker restart policy: unless-stopped (default: back after a crash or a "
               "reboot), no, always, on-failure",
    "nodes": "several machines: 2 (simulated on this engine) or head=ssh://h1,w1=ssh://h2",
    "engine": "multi-node engine: mp (vLLM native, default), dp (data parallel) or ray",
    "pp": "pipeline-parallel size across nodes (default: nodes × GPUs per node / TP)",
    "gpus_per_node": "GPUs each node gives (default: detected, or 1 on cpu)",
    "ifname": "network interface for gloo/NCCL between nodes",
    "rdma": "pass /dev/infiniband to the nodes (RDMA fabrics)",
}
BOOL_OPTIONS = ("mtp", "bench_mode", "privileged", "enforce_eager", "rdma", "cuda12")
# --no-X turns off an X that invoke.yaml or GLMKIT_X turned on.
SERVE_HELP.update({f"no_{name}": f"turn off --{name.replace('_', '-')} set in invoke.yaml "
                   "or the environment" for name in BOOL_OPTIONS})
PROJECT_HELP = "compose project (default: GLMKIT_PROJECT, invoke.yaml, else glmkit)"
NODES_HELP = "the --nodes of a multi-machine `up` (head=ssh://h1,w1=ssh://h2), to reach each"

HELP: dict[str, dict[str, str]] = {
    "check": {"project": PROJECT_HELP},
    "down": {"project": PROJECT_HELP, "nodes": NODES_HELP},
    "logs": {"project": PROJECT_HELP, "follow": "keep streaming",
            "tail": "lines to show first (default 200)", "nodes": NODES_HELP},
    "status": {"json": "print JSON (one object per container) instead of a table",
            "nodes": NODES_HELP, "project": "with --nodes: the cluster's project"},
    "build": {"vendor": "cuda (nvidia), rocm (amd) or cpu", "model": "build the image this "
            "catalog model uses (a transformers overlay where its image lacks one)",
            "vllm_version": "vLLM release of the official image to build on",
            "force": "rebuild even when up to date",
            "ca_cert": "extra CA certificate for the image (repeatable)"},
    "pull": {"vendor": "cuda (nvidia), rocm (amd) or cpu",
            "model": "pull the image this catalog model uses (its recipe's pin, if any)",
            "vllm_version": "vLLM release to pull (default: the newest stable)",
            "cuda12": "the CUDA 12 (-cu129) tag"},
    "login": {"token": "the token; visible to other users in `ps`: prefer --token-file, "
                       "HF_TOKEN or the hidden prompt (the default without HF_TOKEN)",
              "token_file": "read the token from this file (- for standard input)"},
    "tiny_model": {"layers": "decoder layers (default 2; pipeline parallel needs 4)",
            "force": "regenerate even if present"},
    "bench": {"project": PROJECT_HELP,
            "workload": "prompt-heavy (8000/1000, default), decode-heavy (1000/8000), "
                        "balanced (1000/1000), vision (VisionArena), or custom",
            "batch": "batch sizes, e.g. 1,16,64, or 'recipe' for 1,16,32,64,128,256,512 "
                     "(default 16)",
            "mode": "prompts: batch = --num-prompts, all at once (the recipes); "
                    "concurrency: batch = --max-concurrency",
            "input_len": "prompt tokens (overrides the workload's)",
            "output_len": "output tokens (overrides the workload's)",
            "num_prompts": "prompts per point in concurrency mode; in prompts mode, the batch",
            "request_rate": "requests/s (default 10000, as the recipes: all at once)",
            "label": "name for this run in reports (default: model-vendor-workload)",
            "resume": "finish the missing points of an earlier run (its id)"},
    "report": {"runs": "run ids, folders or ref:NAME (default: every run); repeatable",
            "compare": "print B / A ratios for exactly two runs",
            "out": "folder for report.png and report.csv (default results/reports/<time>)"},
    "doctor": {"vendor": "the vendor you will use (default: what this machine has)",
            "model": "check disk space and Hub access for this model",
            "port": "the port you will serve on (default 8000)",
            "host": "the address you will publish on (default 127.0.0.1)"},
    "download": {"model": "catalog id or Hugging Face repo id",
            "revision": "branch, tag or commit (default main)",
            "hf_cache": "host Hugging Face cache (default $HF_HOME or ~/.cache/huggingface)"},
    "plan": {"model": "catalog id (default: the tiny model)",
            "vendor": "cuda, rocm (default: what this machine has); picks the reference GPU "
                      "when none is named or detected",
            "gpu_count": "number of GPUs (default: detected, else the GPU's 8-GPU node)",
            "gpu": "GPU type: h100, h200, b200, b300, mi300x, mi325x, mi355x (default: detected)",
            "gpu_mem": "GB per GPU, for a GPU type glmkit does not know (with or without --gpu)",
            "strategy": "size for this recipe strategy (default: the recommendation for --goal)",
            "goal": "latency (TP/TEP with MTP) or throughput (DEP); default latency",
            "tp": "check this tensor-parallel size instead of choosing one",
            "batch": "decode batch for the TPOT estimate (default 16)",
            "context": "tokens per sequence for the TPOT estimate (default 9000: 8k in + 1k out)",
            "gpu_memory_utilization": "fraction of GPU memory for vLLM (default 0.9)",
            "nodes": "plan for this many machines of --gpu-count GPUs each"},
    "recipes": {"action": "list, sync or diff",
            "from_": "sync from this folder, git URL or .tar.gz URL "
                     "(default: the vllm-project/recipes repository)"},
}
HELP["render"] = {**SERVE_HELP, "check": "validate with `docker compose config` (default on)"}
HELP["up"] = {**SERVE_HELP, "api_key": "API key clients must send (or VLLM_API_KEY); required "
              "with a non-loopback --host; visible to other users in `ps`: prefer "
              "--api-key-file or VLLM_API_KEY",
              "api_key_file": "read the API key from this file (- for standard input)",
              "smoke": "check one tool call, streamed and not, after start (default on; "
                       "`invoke check` runs every case)"}
HELP["export"] = {**SERVE_HELP, "target": "what to export: k8s"}
HELP["config"] = dict(SERVE_HELP)
HELP["tune"] = {**SERVE_HELP,
                "workload": "the workload to tune for (default balanced: 1000/1000)",
                "batch": "batch sizes per candidate; the largest is scored (default 16)",
                "slo": "bounds a request must meet to count, in ms: ttft-p99=2000,"
                       "tpot-p99=50 (vllm bench serve --goodput); default: throughput",
                "budget": "minutes; no new candidate starts after (default 30)",
                "candidates": "at most this many candidates, the recipe default first",
                "resume": "finish an earlier tune (its id under results/tune/)"}
