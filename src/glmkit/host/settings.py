"""User settings, resolved in one place and in one written-down order.

    code default  <  invoke.yaml (`glmkit:` section)  <  GLMKIT_* environment  <  flag

Every value remembers where it came from, so `invoke config` can show it. The
environment is passed in rather than read at import time, so tests pass `env={}`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, NewType, get_args, get_origin, get_type_hints

from glmkit import DEFAULT_MODEL
from glmkit.errors import UsageError
from glmkit.host.nodes import Nodes, engine_tls, parse_nodes_setting
from glmkit.host.vendors import VendorName, resolve_vendor
from glmkit.policy import check_setting_sources

# Settings with a closed set of values: parsed into these types once, where read.
Engine = Literal["mp", "dp", "ray"]  # vLLM's multi-node engines (glmkit.plan.cluster)
RestartPolicy = Literal["no", "always", "unless-stopped", "on-failure"]  # Docker's
# A recipe strategy's name. Not a closed set: synced recipes add strategies, so the
# settings check its shape and the recipe book whether the model offers it.
Strategy = NewType("Strategy", str)
# recipe_schema.Name's shape, which a synced strategy's name has (not imported: pydantic
# would slow every `invoke --list`; a unit test holds the two the same).
_STRATEGY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_strategy(text: str) -> Strategy:
    """--strategy as given: a name as the recipes write them (single_node_tp)."""
    name = text.strip()
    if not _STRATEGY_NAME.fullmatch(name):
        raise UsageError(f"Unknown --strategy {name[:60]!r}: a recipe strategy is a name "
                         "like single_node_tp (`invoke plan` lists the model's).")
    return Strategy(name)


def parse_vendor(text: str) -> VendorName:
    """--vendor as given, aliases (nvidia, amd) included, as the vendor's name."""
    return resolve_vendor(text).name


# Settings whose text is parsed into a type of their own, from any layer alike.
_PARSERS: dict[str, Any] = {"vendor": parse_vendor, "nodes": parse_nodes_setting,
                            "strategy": parse_strategy}

# The largest count and GPU memory any option takes: past these a number is a typo.
MAX_COUNT = 1 << 20
MAX_GPU_MEM_GB = 100_000.0
# Draft tokens per step: the recipes use 1 to 5 (GLM-5.2's 5 the most); every draft is one
# more pass of the MTP layer per step, and each is accepted only if all before it were, so
# past 16 the drafts cost more than they can save. A larger number is a typo.
MAX_MTP_TOKENS = 16


def setting(default: Any, help: str, *, low: float | None = None,
            high: float | None = None) -> Any:
    """A Settings field: its default, its help and its range, declared once. Task options,
    `--no-X` switches, `invoke config`, the help's "(default: …)" and the range checks of
    every task (`check_ranges`, `invoke plan` too) all derive from these."""
    return field(default=default, metadata={"help": help, "range": (low, high)})


# Numbers as ASCII text: int() and float() also take other scripts' digits ("٨٠٠٠" is
# 8000), full-width ones and underscores, which then render as a number nobody typed.
# Up to 4,000 digits, within int()'s own limit: an absurd size is "at most N".
_INT = re.compile(r"[+-]?[0-9]{1,4000}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})"
                    r"(?:[eE][+-]?[0-9]{1,4})?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def parse_number(value: Any, kind: type[int] | type[float]) -> int | float:
    """`value` (text, or a number read from YAML) as `kind`; ValueError when it is not
    written in ASCII digits as Python's own literals are."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int) or (isinstance(value, float) and kind is float):
        return kind(value)
    text = str(value).strip()
    if not (_INT if kind is int else _FLOAT).fullmatch(text):
        raise ValueError(text)
    return kind(text)


def shown_value(value: Any, limit: int = 40) -> str:
    """A value quoted for a message, at most `limit` characters of it: a pasted wall of
    text is not echoed whole."""
    text = str(value)
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def check_value(name: str, value: Any) -> None:
    """A UsageError when `value` is outside setting `name`'s declared range."""
    low, high = _RANGES.get(name, (None, None))
    if value is None or (low is None and high is None):
        return
    option = "--" + name.replace("_", "-")
    if isinstance(low, int) and isinstance(high, int):
        if not (isinstance(value, int) and low <= value <= high):
            raise UsageError(f"{option} must be a whole number from {low} to {high}, got "
                             f"{str(value)[:40]}.")
    elif not (low is not None and low < value <= (high if high is not None else value)):
        raise UsageError(f"{option} must be in ({low:g}, {high:g}], got {str(value)[:40]}"
                         + ("; vLLM's default is 0.9." if name == "gpu_memory_utilization"
                            else "."))


@dataclass(frozen=True, kw_only=True)
class Settings:
    project: str = setting("glmkit", "compose project name")
    vendor: VendorName | None = setting(None, "cuda (nvidia), rocm (amd) or cpu; default: "
                                        "what this machine has")
    model: str = setting(DEFAULT_MODEL, "catalog id (`invoke models`), HF repo id or model "
                         "folder")
    image: str | None = setting(None, "image to run instead of the vendor's pinned one")
    vllm_version: str | None = setting(None, "vLLM version inside --image, so the rendered "
                                       "flags match it")
    # A model group (glmkit.plan.group): several models behind one port, one awake at a
    # time. `--model A --model B` on the command line; a list, or a named group, in
    # invoke.yaml. Resolved by `resolve_settings`: `model` is then the first of them.
    models: tuple[str, ...] = setting((), "a model group: these models behind one port, one "
                                      "awake at a time (vLLM's sleep mode); on the command "
                                      "line repeat --model")
    group: str | None = setting(None, "a model group named in invoke.yaml's `groups:` "
                                "(NAME: [model, model, ...])")
    sleep_level: int | None = setting(None, "model groups: vLLM's sleep level; 1 keeps a "
                                      "sleeping model's weights in host memory (fast wake), "
                                      "2 drops them (read from disk again on wake); default "
                                      "1, or 2 where host memory lacks room", low=1, high=2)
    aliases: str | None = setting(None, "more model names the server answers to, comma-"
                                  "separated (claude-sonnet-4-5,gpt-5-codex): for clients that "
                                  "ask for a name of their own")
    host: str = setting("127.0.0.1", "address the port is published on")
    port: int = setting(8000, "host port", low=1, high=65535)
    tp: int | None = setting(None, "tensor-parallel size; default: the recipe's for the model",
                             low=1, high=MAX_COUNT)
    dp: int = setting(1, "data-parallel size", low=1, high=MAX_COUNT)
    gpus: str | None = setting(None, "GPU indexes, e.g. 0,1,2,3; default: all")
    gpu_memory_utilization: float = setting(0.9, "fraction of GPU memory for vLLM", low=0.0,
                                            high=1.0)
    max_model_len: int | None = setting(None, "context length; default 65536, capped at the "
                                        "model's limit and what fits", low=1, high=MAX_COUNT)
    max_num_batched_tokens: int | None = setting(None, "vLLM --max-num-batched-tokens", low=1,
                                                 high=MAX_COUNT)
    kv_offload_gb: float | None = setting(None, "GB of CPU memory for vLLM's native KV "
                                          "offloading (GPU servers; where the recipe's "
                                          "kv_offload_support has offloading_cpu)", low=0.0,
                                          high=MAX_GPU_MEM_GB)
    mtp: bool = setting(False, "MTP speculative decoding (GLM-4.5/4.6/4.7 text models)")
    mtp_tokens: int | None = setting(None, "MTP draft tokens; default: the recipe's (1 for "
                                     "GLM-4.x, 3 for 5/5.1, 5 for 5.2)", low=1,
                                     high=MAX_MTP_TOKENS)
    spec_mode: str | None = setting(None, "speculative decoding mode of the recipe (mtp, "
                                    "dflash, dspark, …: `invoke plan` lists them); turns "
                                    "speculative decoding on; default: the recipe's "
                                    "default_mode")
    # Hardware to plan for instead of what is detected: a taxonomy id (h200, mi355x) or a
    # GPU name with --gpu-mem; and the recipes' strategy names.
    gpu: str | None = setting(None, "plan for this GPU instead of the detected one: h100, "
                              "h200, b200, b300, mi300x, mi325x, mi355x, or any name with "
                              "--gpu-mem")
    gpu_count: int | None = setting(None, "GPUs per node to plan for; default: detected, else "
                                    "the GPU's 8-GPU node", low=1, high=MAX_COUNT)
    gpu_mem: float | None = setting(None, "GiB per GPU (nvidia-smi's MiB / 1024), for a "
                                    "GPU the recipes' hardware list lacks", low=0.0,
                                    high=MAX_GPU_MEM_GB)
    strategy: Strategy | None = setting(None, "the recipes' strategy: single_node_tp, "
                                   "single_node_tep, single_node_dep, multi_node_tp, "
                                   "multi_node_tp_pp, multi_node_tep, multi_node_dep, "
                                   "pd_cluster; default: the recipe's recommendation")
    # Prefill/decode disaggregation (--strategy pd_cluster, glmkit.plan.pd).
    prefill_gpus: int | None = setting(None, "pd_cluster: GPUs of the prefill pool (CPU: "
                                       "cores); default: half the node, or half the nodes",
                                       low=1, high=MAX_COUNT)
    decode_gpus: int | None = setting(None, "pd_cluster: GPUs of the decode pool (CPU: cores); "
                                      "default: the rest", low=1, high=MAX_COUNT)
    router_policy: str | None = setting(None, "pd_cluster: the router's load balancing "
                                        "(round_robin, random, power_of_two, cache_aware, "
                                        "consistent_hash); default: the recipe's")
    cuda12: bool = setting(False, "use vLLM's CUDA 12 (-cu129) images; automatic with an "
                           "NVIDIA driver below 580")
    bench_mode: bool = setting(False, "serve with --no-enable-prefix-caching, as the recipes "
                               "benchmark")
    privileged: bool = setting(False, "ROCm: every device and capability (privileged, "
                               "/dev/mem, SYS_ADMIN); command line only")
    enforce_eager: bool = setting(False, "skip torch.compile and graph capture (faster start, "
                                  "slower serving)")
    media_dir: str | None = setting(None, "V models: host folder served read-only as local "
                                    "media")
    hf_cache: str | None = setting(None, "host Hugging Face cache; default $HF_HOME or "
                                   "~/.cache/huggingface")
    health_timeout: int | None = setting(None, "seconds to wait for /health; default sized to "
                                         "the model", low=1, high=MAX_COUNT)
    extra_args: tuple[str, ...] = setting((), "vLLM flags; on the command line after `--`")
    # Beyond one machine (glmkit.plan.cluster): "2" simulates two nodes on this engine;
    # "head=ssh://gpu1,w1=ssh://gpu2" drives each machine's Docker engine.
    nodes: Nodes | None = setting(None, "several machines: 2 (simulated on this engine) or "
                                "head=ssh://h1,w1=ssh://h2")
    engine: Engine = setting("mp", "multi-node engine: mp (vLLM native), dp (data parallel) or "
                          "ray")
    pp: int | None = setting(None, "pipeline-parallel size across nodes; default: nodes × GPUs "
                             "per node / TP", low=1, high=MAX_COUNT)
    gpus_per_node: int | None = setting(None, "GPUs each node gives; default: detected, or 1 "
                                        "on cpu", low=1, high=MAX_COUNT)
    ifname: str | None = setting(None, "network interface for gloo/NCCL between nodes")
    rdma: bool = setting(False, "pass /dev/infiniband to the nodes (RDMA fabrics)")
    restart: RestartPolicy = setting("unless-stopped", "Docker restart policy: unless-stopped "
                                     "(back after a crash or a reboot), no, always, on-failure")
    # Which layer gave extra_args (not a setting): glmkit.policy lets only the command
    # line ask for flags that load code.
    extra_args_source: str = field(default="default", metadata={"internal": True})
    # Which layer gave the image: only the command line may name an image that is neither
    # vLLM's official one nor glmkit's own (glmkit.policy.admit_image).
    image_source: str = field(default="default", metadata={"internal": True})
    # Which layers gave the host folders: glmkit.policy.admit_host_folder refuses a system
    # folder from invoke.yaml or the environment.
    hf_cache_source: str = field(default="default", metadata={"internal": True})
    media_dir_source: str = field(default="default", metadata={"internal": True})
    model_source: str = field(default="default", metadata={"internal": True})
    models_source: str = field(default="default", metadata={"internal": True})

    def __post_init__(self) -> None:
        # Settings built in Python (`Settings(nodes="2")`) get the same types as read ones.
        for name, parse in _PARSERS.items():
            if isinstance(value := getattr(self, name), str):
                object.__setattr__(self, name, parse(value))

    def values(self) -> dict[str, Any]:
        """The user's settings as plain data (nodes as the text given), as invoke.yaml
        would hold them: for `invoke config` and a tune's state and winner file."""
        return {f.name: str(v) if isinstance(v := getattr(self, f.name), Nodes) else v
                for f in fields(self)}


# The options of the tasks that are not serve settings, with their defaults and help,
# declared once: the task's option defaults to None (not given), its help shows the
# default from here, and the library's request applies it (bench, tune, plan).
@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    workload: str = setting("prompt-heavy", "prompt-heavy (8000/1000), decode-heavy "
                            "(1000/8000), balanced (1000/1000), visionarena (VisionArena-Chat, "
                            "offline), random-mm (synthetic images), vision (VisionArena, else "
                            "random-mm), agentic (multi-turn sessions, prefix caching on vs "
                            "off), or custom")
    mode: str = setting("prompts", "prompts: batch = --num-prompts, all at once (the "
                        "recipes); concurrency: batch = --max-concurrency")
    batch: str = setting("16", "batch sizes, e.g. 1,16,64, or 'recipe' for 1,16,32,64,128,"
                         "256,512; without it --num-prompts if given")
    request_rate: str = setting("10000", "requests/s (as good as all at once, as the "
                                "recipes send them)")
    sessions: int = setting(4, "agentic: sessions at once")
    turns: int = setting(6, "agentic: turns per session")


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    workload: str = setting("balanced", "the workload to tune for (balanced: 1000/1000)")
    batch: str = setting("16", "batch sizes per candidate; the largest is scored")
    budget: float = setting(30.0, "minutes; no new candidate starts after", low=0.0,
                            high=float(MAX_COUNT))
    candidates: int = setting(0, "at most this many candidates, the recipe default first; 0: "
                              "every one", low=0, high=MAX_COUNT)
    eval_limit: int = setting(50, "GSM8K questions per candidate (a seeded sample; the tiny "
                              "model: its arithmetic set) for its accuracy; a candidate "
                              "significantly below the recipe default's is never the "
                              "winner; 0: no accuracy", low=0, high=MAX_COUNT)


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    batch: int = setting(16, "decode batch for the TPOT estimate", low=1, high=MAX_COUNT)
    context: int = setting(9000, "tokens per sequence for the TPOT estimate (9000: 8k in + "
                           "1k out)", low=1, high=MAX_COUNT)
    goal: str = setting("latency", "latency (TP/TEP with MTP) or throughput (DEP)")


# The small tasks' options. A switch that is on by default keeps its default here too:
# the task's signature reads it from the table (invoke needs True there for --no-X).
@dataclass(frozen=True, kw_only=True)
class LogsOptions:
    tail: int = setting(200, "lines to show first", low=0, high=MAX_COUNT)


@dataclass(frozen=True, kw_only=True)
class CheckOptions:
    api: str = setting("all", "chat, messages (Anthropic), responses (OpenAI) or all")


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    protocol: str = setting("completions-5shot", "completions-5shot (the published thresholds'"
                            ": vLLM CI's 5-shot /v1/completions, temperature 0, 256 tokens) or "
                            "chat-thinking (/v1/chat/completions, thinking on: the template and "
                            "reasoning parser in the path)")
    limit: int = setting(0, "ask a seeded sample of this many questions (default: the whole "
                         "test split)", low=1, high=MAX_COUNT)
    seed: int = setting(1234, "the sample's seed (recorded with the run)", low=0,
                        high=2 ** 32 - 1)
    concurrency: int = setting(0, "requests at once (default: 32, or --max-num-seqs if fewer)",
                               low=1, high=1024)


@dataclass(frozen=True, kw_only=True)
class TinyModelOptions:
    layers: int = setting(2, "decoder layers (pipeline parallel needs 4)", low=1,
                          high=MAX_COUNT)


@dataclass(frozen=True, kw_only=True)
class BenchDataOptions:
    rows: int = setting(32, "image + question rows", low=1, high=MAX_COUNT)


@dataclass(frozen=True, kw_only=True)
class TuneMoeOptions:
    budget: float = setting(150.0, "seconds the tuner may spend trying tile configs")


@dataclass(frozen=True, kw_only=True)
class UpOptions:
    smoke: bool = setting(True, "check one tool call, streamed and not, after start "
                          "(`invoke check` runs every case)")


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    check: bool = setting(True, "validate with `docker compose config`")


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    vendor: str = setting("cpu", "cuda (nvidia), rocm (amd) or cpu")


@dataclass(frozen=True, kw_only=True)
class PullOptions:
    vendor: str = setting("cuda", "cuda (nvidia), rocm (amd) or cpu")


# Keyed by the task's function name (tiny_model is `invoke tiny-model`).
TASK_OPTIONS: dict[str, type] = {
    "bench": BenchOptions, "tune": TuneOptions, "plan": PlanOptions, "logs": LogsOptions,
    "check": CheckOptions, "eval": EvalOptions, "tiny_model": TinyModelOptions,
    "bench_data": BenchDataOptions,
    "tune_moe": TuneMoeOptions, "up": UpOptions, "render": RenderOptions,
    "build": BuildOptions, "pull": PullOptions}


def option_help(task: str) -> dict[str, str]:
    """A task's table options' help, each ending in its default."""
    return {f.name: help_text(f) for f in fields(TASK_OPTIONS[task])}


def task_option(task: str, name: str, value: Any) -> Any:
    """Option `name` of `task` as given on the command line (text), parsed, or its
    table's default when not given (None). Numbers must be finite and in the field's
    range: one line otherwise."""
    f = next(f for f in fields(TASK_OPTIONS[task]) if f.name == name)
    if value is None:
        return f.default
    if f.type not in ("int", "float"):
        return value
    option = name.replace("_", "-")
    low, high = f.metadata["range"]
    result = number(value, int if f.type == "int" else float, option, low, required=True)
    if high is not None and result > high:
        # {:g} wrote 1 << 20 as 1.04858e+06
        limit = f"{high:,}" if f.type == "int" else f"{high:g}"
        raise UsageError(f"--{option} must be at most {limit}, got {str(value)[:40]}.")
    return result


def user_settings() -> list[dataclasses.Field[Any]]:
    """The fields a user sets (invoke.yaml, GLMKIT_*, flags)."""
    return [f for f in fields(Settings) if not f.metadata.get("internal")]


def help_text(f: dataclasses.Field[Any]) -> str:
    """A setting's help with its default, read from the field, never restated by hand."""
    text = str(f.metadata["help"])
    if f.default is True and "default" not in text:
        text += " (default on)"
    elif f.default not in (None, False, ()) and "default" not in text:
        text += f" (default {f.default})"
    return text


_RANGES = {f.name: f.metadata["range"] for f in fields(Settings) if "range" in f.metadata}


# A Compose project name (Docker's rule): it names containers, networks and files.
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_ranges(settings: Settings) -> None:
    """Every setting within its declared range, whichever task reads them (down, status,
    logs and check name a project too)."""
    for name in _RANGES:
        check_value(name, getattr(settings, name))
    if not _PROJECT_NAME.fullmatch(settings.project):
        raise UsageError(f"Project name {settings.project[:64]!r}: use 1-63 lowercase letters, "
                         "digits, - and _, starting with a letter or digit.")


# Switches take --X / --no-X on the command line; the rest take a value.
BOOL_SETTINGS = tuple(f.name for f in user_settings() if f.type in ("bool", bool))
# Options the serve tasks take: every setting but the words after `--` and the group's
# models, which the command line gives as --model repeated.
SERVE_HELP = {f.name: help_text(f) for f in user_settings()
              if f.name not in ("extra_args", "models")}
SERVE_HELP["model"] += "; repeat it for a model group (one port, one awake at a time)"
SERVE_HELP.update({f"no_{name}": f"turn off --{name.replace('_', '-')} set in invoke.yaml "
                   "or the environment" for name in BOOL_SETTINGS})


def _choices(hint: Any) -> tuple[str, ...]:
    """The values of a Literal setting (optional or not); () for any other type."""
    if get_origin(hint) is Literal:
        return tuple(get_args(hint))
    return tuple(c for arg in get_args(hint) for c in _choices(arg))


def _coerce(name: str, hint: Any, value: Any) -> Any:
    text = str(value).strip()
    if name in _PARSERS:
        return _PARSERS[name](text)
    if choices := _choices(hint):
        if text not in choices:
            raise UsageError(f"--{name.replace('_', '-')} {text[:60]!r}: choose one of "
                             f"{', '.join(choices)}.")
        return text
    if "tuple" in str(hint):
        # Shell words, so GLMKIT_EXTRA_ARGS='--x "a b"' keeps "a b" as one argument.
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        try:
            return tuple(shlex.split(text))
        except ValueError as err:
            raise UsageError(f"{name}: {err} in {text[:80]!r}.") from None
    if "bool" in str(hint):
        if isinstance(value, bool):
            return value
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"0", "false", "no", "off", ""}:
            return False
        raise UsageError(f"{name}: expected true or false, got {shown_value(text)}.")
    if "int" in str(hint) and "float" not in str(hint):
        try:
            return parse_number(value, int)
        except ValueError:
            raise UsageError(f"{name}: expected a whole number (0-9), got "
                             f"{shown_value(text)}.") from None
    if "float" in str(hint):
        try:
            return parse_number(value, float)
        except ValueError:
            raise UsageError(f"{name}: expected a number, got {shown_value(text)}.") from None
    return text


# Settings whose layer the policy weighs (Settings' internal `X_source` fields).
SOURCED = ("extra_args", "image", "hf_cache", "media_dir", "model", "models")


def resolve_settings(
    flags: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Merge the layers; `None` in a layer means "not set there"."""
    check_section(config)
    hints = get_type_hints(Settings)
    known = {f.name for f in user_settings()}
    config = dict(config or {})
    groups = parse_groups(config.pop(GROUPS, None))
    for layer_name, layer in (("invoke.yaml", config), ("flag", flags)):
        unknown = sorted(str(name) for name in set(layer) - known)
        if unknown:
            raise UsageError(f"Unknown setting(s) in {layer_name}: {', '.join(unknown)}.")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in known}
    env_layer = {name: (env or {}).get(f"GLMKIT_{name.upper()}") for name in known}
    for source, layer in (("invoke.yaml", config or {}), ("environment", env_layer),
                          ("flag", flags)):
        for name, value in layer.items():
            if value is None:
                continue
            values[name] = _coerce(name, hints[name], value)
            sources[name] = source
    _resolve_group(values, sources, groups)
    check_setting_sources(values, sources)
    engine_tls(values.get("nodes"), env or {})
    for name in SOURCED:
        values[f"{name}_source"] = sources[name]
    settings = dataclasses.replace(Settings(), **values)
    check_ranges(settings)
    return settings, sources


# --- model groups -----------------------------------------------------------------------------

GROUPS = "groups"  # invoke.yaml's `glmkit: groups: {NAME: [model, ...]}`: not a setting
MAX_MEMBERS = 8  # each sleeping member keeps GiBs on every GPU: past this a list is a typo
_LAYERS = ("default", "invoke.yaml", "environment", "flag")  # lowest to highest


def parse_groups(value: Any) -> dict[str, tuple[str, ...]]:
    """invoke.yaml's `groups:`: names (like a recipe strategy's) to lists of models, each
    checked as --model is where it is planned."""
    if value is None:
        return {}
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

    from glmkit.text import validation_reason

    class Groups(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        groups: dict[str, list[str]] = Field(max_length=64)

        @field_validator("groups")
        @classmethod
        def _shape(cls, groups: dict[str, list[str]]) -> dict[str, list[str]]:
            for name, models in groups.items():
                if not _STRATEGY_NAME.fullmatch(name):
                    raise ValueError(f"group name {shown_value(name)} is not a name (1-64 of "
                                     "A-Z a-z 0-9 . _ -)")
                if not 2 <= len(models) <= MAX_MEMBERS:
                    raise ValueError(f"group {name!r} has {len(models)} model(s): a group has "
                                     f"2 to {MAX_MEMBERS}")
            return groups

    try:
        return {k: tuple(v) for k, v in Groups(groups=value).groups.items()}
    except ValidationError as err:
        raise UsageError(f"invoke.yaml: `groups:` {validation_reason(err)}; write it as "
                         "groups: {NAME: [model, model]}.") from None


def _resolve_group(values: dict[str, Any], sources: dict[str, str],
                   groups: Mapping[str, tuple[str, ...]]) -> None:
    """One model, a list of models, or a named group: the highest layer that names any of
    them decides; two at the same layer contradict each other. A group's `model` is its
    first member."""
    if "models" in values and not values["models"]:  # an empty list names nothing
        values.pop("models")
        sources["models"] = "default"
    named = {k: sources[k] for k in ("model", "models", "group") if sources[k] != "default"}
    if not named:
        return
    top = max(_LAYERS.index(layer) for layer in named.values())
    winners = sorted(k for k, layer in named.items() if _LAYERS.index(layer) == top)
    if len(winners) > 1:
        raise UsageError(f"{' and '.join('--' + w for w in winners)} from {_LAYERS[top]} "
                         "contradict each other: name one model, a list of models, or a "
                         "group.")
    winner = winners[0]
    if winner == "group":
        name = values["group"]
        if name not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise UsageError(f"--group {shown_value(name)}: invoke.yaml's `groups:` has no "
                             f"such group (it has: {known}).")
        values["models"], sources["models"] = groups[name], "invoke.yaml"
    elif winner == "model":
        values.pop("models", None)
        values.pop("group", None)
        return
    else:
        values.pop("group", None)
    models = tuple(values["models"])
    if len(models) > MAX_MEMBERS:
        raise UsageError(f"A model group has at most {MAX_MEMBERS} models; "
                         f"{len(models)} were named.")
    if len(models) < 2:  # a list of one is that model
        values.pop("models", None)
        if models:
            values["model"], sources["model"] = models[0], sources["models"]
        return
    values["model"], values["models"] = models[0], models
    sources["model"] = sources["models"]


def remainder_words(remainder: str, argv: Sequence[str]) -> tuple[str, ...]:
    """The words after `--` exactly as the shell handed them over.

    invoke joins them with spaces (`c.remainder`), which loses the word boundaries of
    `'{"method": "mtp"}'`; the process's own argv still has them. Text that did not come
    from this argv (a task called from Python) is split as shell words."""
    if "--" in argv:
        words = tuple(argv[list(argv).index("--") + 1:])
        if " ".join(words) == remainder:
            return words
    try:
        return tuple(shlex.split(remainder))
    except ValueError as err:
        raise UsageError(f"The vLLM arguments after `--` do not split into words: {err}.") \
            from None


def flags_from_options(options: Mapping[str, Any], remainder: str | Sequence[str],
                       bool_options: tuple[str, ...]) -> dict[str, Any]:
    """A task's options as the flag layer: None where not given; `--X`/`--no-X` pairs as
    True/False, so the command line can turn off what invoke.yaml turned on; the words
    after `--` (a word list, or text split as shell words) as extra vLLM arguments."""
    known = {f.name for f in fields(Settings)}
    flags = {k: v for k, v in options.items() if k in known and k not in bool_options}
    if isinstance(flags.get("model"), list | tuple):  # --model repeated: a model group
        given = [str(m) for m in flags.pop("model")]
        if len(given) > 1:
            flags["models"] = tuple(given)
        elif given:
            flags["model"] = given[0]
    for name in bool_options:
        on, off = options.get(name), options.get(f"no_{name}")
        if on and off:
            flag = name.replace("_", "-")
            raise UsageError(f"--{flag} and --no-{flag} contradict each other.")
        flags[name] = True if on else (False if off else None)
    words = remainder_words(remainder, ()) if isinstance(remainder, str) else tuple(remainder)
    if words:
        flags["extra_args"] = words
    return flags


def check_section(section: Any) -> None:
    """invoke.yaml's `glmkit:` is a mapping of settings, or absent."""
    if section is not None and not isinstance(section, Mapping):
        raise UsageError(f"invoke.yaml: `glmkit:` must be a mapping of settings (port: 9000, "
                         f"...), not a {type(section).__name__}: {str(section)[:60]!r}.")


def number(value: Any, kind: type[int] | type[float], option: str,
           minimum: float | None = None, *, required: bool = False) -> Any:
    """An optional numeric option given as text; a usage error when it is not a finite
    number (or is below `minimum`, or is empty where `required`)."""
    shown = shown_value(value)  # a pasted wall of digits is not echoed whole
    try:
        result = None if value in (None, "") else parse_number(value, kind)
    except (ValueError, OverflowError):
        raise UsageError(f"--{option}: expected a number, got {shown}.") from None
    if result is None and required:
        raise UsageError(f"--{option}: expected a number, got {shown}.")
    if isinstance(result, float) and not math.isfinite(result):  # inf, nan: no budget
        raise UsageError(f"--{option}: expected a finite number, got {shown}.")
    if result is not None and minimum is not None and not result >= minimum:
        raise UsageError(f"--{option} must be at least {minimum:g}, got {str(value)[:40]}.")
    return result
