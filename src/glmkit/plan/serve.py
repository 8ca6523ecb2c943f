"""Serve plan: recipe book + vendor profile + host facts + user settings.

`build_plan` is the one place where these meet. It validates everything a user can get
wrong before any file is written or container started, and returns a frozen
`ServePlan` from which `compose` renders the file. It reads nothing itself: what it
needs of the host comes in as `HostFacts` (`host.facts.read_host_facts`), so the same
inputs give the same plan, here or for an export.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from glmkit import __version__
from glmkit.endpoints import http_url, is_ip, is_loopback
from glmkit.errors import UsageError
from glmkit.host.facts import HostFacts
from glmkit.host.hardware import Hardware, needs_cuda12_images
from glmkit.host.settings import RestartPolicy, Settings, check_ranges, shown_value
from glmkit.host.vendors import VendorProfile, resolve_vendor
from glmkit.knowledge.advisories import Applied, Situation, applicable
from glmkit.knowledge.catalog import DEFAULT_MAX_MODEL_LEN, ModelSpec
from glmkit.knowledge.images import (
    MTP_TOOL_FIX,
    ImageProfile,
    at_least,
    choose_image,
    flag_supported,
    is_nightly_build,
)
from glmkit.knowledge.recipe_schema import lookup, one_line
from glmkit.knowledge.recipes import (
    RecipeBook,
)
from glmkit.knowledge.resolver import (
    CPU_TARGET,
    HardwareTarget,
    check_strategy,
    default_features,
    hardware_note,
    offered_strategies,
    precision_supported,
    recommend_strategy,
    resolve,
    spec_dropped,
    target_for,
)
from glmkit.knowledge.sizing import Arch, shm_size
from glmkit.labels import LABEL as LABEL  # render.cluster_compose imports it from here
from glmkit.labels import ServerLabels
from glmkit.plan.model_facts import ModelFacts, decide_facts
from glmkit.plan.parts import (
    KV_TRANSFER,
    PARALLEL,
    Defaults,
    Part,
    ServeCommand,
    parted,
    refuse_owned,
)
from glmkit.policy import (
    Source,
    admit_aliases,
    admit_args,
    admit_env,
    admit_name,
    admit_served_name,
    check_code_loading,
    env_dict,
    flag_names,
    image_repository,
    merge_args,
)
from glmkit.vllm_args import drop_flags, flag_value

CONTAINER_HF_HOME = "/root/.cache/huggingface"
CONTAINER_VLLM_CACHE = "/root/.cache/vllm"  # torch.compile cache; not under HF_HOME
CONTAINER_MOE_CONFIGS = f"{CONTAINER_VLLM_CACHE}/moe-configs"  # invoke tune-moe writes here
CONTAINER_MEDIA = "/media"
# Secrets reach containers from the environment of the `docker compose` process, by
# name only: their values are never written into the compose file.
SECRET_ENV = ("HF_TOKEN", "VLLM_API_KEY")
SERVICE = "vllm"  # the compose service of a one-node server
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def cache_volume(project: str, vendor: str) -> str:
    """The compile-cache volume of one project. What a container writes there (torch.compile
    and inductor artifacts, which are code, and `invoke tune-moe`'s kernel configs) is
    loaded by that project's later servers only, and `docker compose down -v` of one
    project removes its own. The cost: a new project compiles once at its first start.
    The `_` keeps every name apart from the old shared `glmkit-vllm-cache-VENDOR`, which
    may hold what any project ran: no project inherits it."""
    return f"{project}_vllm-cache-{vendor}"
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")  # Linux: 15 characters


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool
    kind: Literal["bind", "volume"]


@dataclass(frozen=True, kw_only=True)
class ServePlan(Defaults):
    project: str
    model: ModelSpec
    vendor: VendorProfile
    image: ImageProfile
    served_model_name: str
    command: ServeCommand  # what `vllm serve` is given, by layer
    environment: dict[str, str]
    secret_env: tuple[str, ...]
    devices: tuple[str, ...]
    group_add: tuple[str, ...]
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    ipc_host: bool
    shm_size: str | None
    privileged: bool
    gpu_ids: tuple[str, ...] | None  # None: all GPUs
    tensor_parallel: int
    data_parallel: int
    max_model_len: int
    host: str
    port: int
    mounts: tuple[Mount, ...]
    labels: dict[str, str]
    start_period_s: int
    health_timeout_s: int
    model_dir: Path | None  # host folder of a local model
    notes: tuple[str, ...]
    strategy: str = "single_node_tp"
    target: HardwareTarget = CPU_TARGET
    restart: RestartPolicy = "unless-stopped"  # Docker's restart policy
    aliases: tuple[str, ...] = ()  # more names it answers to (--aliases)
    # What the served model is (vision, tiny, exact answers): up, check and bench read it.
    facts: ModelFacts = field(default_factory=ModelFacts)
    # What is known about serving this here that the recipe does not say, one line each
    # (knowledge/advisories.yaml, the recipe's hardware_notes): also in `notes`; `doctor`
    # shows them as checks.
    advisories: tuple[str, ...] = ()

    @property
    def base_url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def serve_args(self) -> tuple[str, ...]:
        """Everything after `vllm serve` for the one server (a cluster's nodes and the
        pools make theirs from `command`)."""
        return self.command.argv()

    # --- the Deployment protocol (plan.deployment): one server, one container ---------
    @property
    def serving(self) -> ServePlan:
        return self

    def served(self) -> tuple[ServePlan, ...]:
        return (self,)

    @property
    def local(self) -> bool:
        return True  # the API is this machine's to reach

    @property
    def node_count(self) -> int:
        return 1

    @property
    def rejoins(self) -> bool:
        return True  # one container: nothing to rejoin

    @property
    def keep_on_failure(self) -> bool:
        return True  # stopped, not removed: `invoke logs` shows why it failed

    @property
    def head_command(self) -> tuple[str, ...] | None:
        return None

    def parts(self) -> tuple[Part, ...]:
        return (Part(SERVICE, "The vLLM container", self.project, None),)

    @property
    def api_probe_url(self) -> str | None:
        """Its published port, checked from this machine."""
        return self.base_url


def _kv_offload(s: Settings, model: ModelSpec, vendor: VendorProfile, notes: list[str]
                ) -> list[str]:
    """`--kv-offload-gb N`: vLLM's native CPU KV offloading, where the recipe says the
    model supports it. vLLM's CPU backend keeps its KV cache in RAM already and refuses
    it: there it is rendered (and validated) only, and said so."""
    if s.kv_offload_gb is None:
        return []
    support = model.recipe.data.kv_offload_support if model.recipe else None
    if str(lookup(support, "offloading_cpu") or "") in ("", "unsupported", "none", "false"):
        raise UsageError(f"--kv-offload-gb: {model.id}'s recipe does not list CPU KV "
                         "offloading (kv_offload_support: offloading_cpu); `invoke plan` "
                         "shows what it supports.")
    if not vendor.has_gpus:
        notes.append("--kv-offload-gb: vLLM's CPU backend refuses KV offloading (its KV "
                     "cache is in RAM already): rendered for a GPU server, not served here")
    return ["--kv-offloading-size", f"{s.kv_offload_gb:g}", "--kv-offloading-backend",
            "native"]


def _gpu_ids(text: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    # ASCII digits: str.isdigit() takes "²" and "٣", which no driver numbers a GPU by.
    if not ids or not all(re.fullmatch(r"[0-9]{1,4}", i) for i in ids):
        raise UsageError(f"--gpus {shown_value(text)}: give GPU indexes separated by commas, "
                         "e.g. 0,1,2,3.")
    ids = tuple(str(int(i)) for i in ids)  # "01" is GPU 1
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {shown_value(text)} names a GPU twice.")
    return ids


def _check_ranges(s: Settings) -> None:
    check_ranges(s)  # every count, size and fraction, from the settings' one table
    if not _PROJECT_NAME.match(s.project):
        raise UsageError(f"Project name {shown_value(s.project)}: use lowercase letters, "
                         "digits, - and _.")
    if s.port < 1024:
        raise UsageError(f"--port {s.port} is a privileged port; use one from 1024 up "
                         "(the default is 8000).")
    for option, text in (("--host", s.host), ("--image", s.image or ""),
                         ("--model", s.model), ("--media-dir", s.media_dir or ""),
                         ("--hf-cache", s.hf_cache or "")):
        if any(ch in text for ch in "\n\r\0"):
            raise UsageError(f"{option} contains a line break or NUL character.")
    if s.host != "localhost" and not is_ip(s.host):
        raise UsageError(f"--host {shown_value(s.host)} is not an IP address to publish on.")
    if s.ifname is not None and not _IFNAME.match(s.ifname):
        raise UsageError(f"--ifname {s.ifname[:40]!r} is not a network interface name.")


def choose_target(book: RecipeBook, vendor: VendorProfile, hw: Hardware, *,
                  gpu: str | None = None,
                  gpu_count: int | None = None, gpu_mem: float | None = None
                  ) -> tuple[HardwareTarget, bool, str | None]:
    """The machine to plan for, whether it is this one, and a note when it is assumed.

    Named hardware (`--gpu`, `--gpu-count`) wins over detected; with neither, the recipes'
    reference node for the vendor is assumed and said so."""
    if gpu:
        return target_for(book, gpu, gpu_count, gpu_mem, vendor), False, None
    if hw.vendor == vendor.name and hw.gpu_count > 0:
        first = hw.gpus[0]
        return target_for(book, first.name, gpu_count or hw.gpu_count,
                          round(first.memory_mib / 1024, 1), vendor), True, None
    if gpu_mem:
        # A GPU glmkit has no name for: its memory and count are enough to size it.
        target = target_for(book, "GPU", gpu_count, gpu_mem, vendor)
        return target, False, (f"planned for {target.describe()} as given; --gpu TYPE adds "
                               "its bandwidth and the recipes' settings for it")
    if vendor.reference_node is None:
        raise UsageError("No GPU detected: pass --gpu (h100, h200, mi300x, …) or --vendor "
                         "cuda/rocm, and --gpu-count.")
    target = target_for(book, vendor.reference_node, gpu_count)
    return target, False, (f"no {vendor.name} GPUs detected here: planned for {target.describe()}, "
                           "the recipes' reference node (pass --gpu TYPE --gpu-count N for "
                           "yours)")


def _target(s: Settings, vendor: VendorProfile, hw: Hardware, book: RecipeBook,
            gpu_ids: tuple[str, ...] | None, notes: list[str]) -> tuple[HardwareTarget, bool]:
    if not vendor.has_gpus:
        if s.gpus is not None:
            raise UsageError("--gpus does not apply to the cpu vendor.")
        return CPU_TARGET, True
    target, here, note = choose_target(book, vendor, hw, gpu=s.gpu,
                                       gpu_count=s.gpu_count or (len(gpu_ids) if gpu_ids
                                                                 else None),
                                       gpu_mem=s.gpu_mem)
    if note:
        notes.append(note)
    return target, here


def _strategy(s: Settings, model: ModelSpec, book: RecipeBook, target: HardwareTarget) -> str:
    assert model.recipe is not None
    if s.strategy is None:
        compatible = offered_strategies(model.recipe, target)
        if s.dp > 1 and model.recipe.is_moe and "single_node_dep" in compatible:
            return "single_node_dep"  # data parallel over MoE experts is the recipes' DEP
        return recommend_strategy(model.recipe, hw=target)[0]
    return check_strategy(book, model.recipe, s.strategy, target, 1 if s.nodes else None)


def _with_mtp_tokens(args: list[str], tokens: int) -> list[str]:
    """Set the draft-token count in either form the recipes write MTP in."""
    # Admitted words join a value to its flag with `=` where it starts with `-`, and recipes
    # may write either form: split them so both forms are found.
    out = [part for arg in args for part in (
        arg.split("=", 1) if arg.startswith(("--speculative-config.num_speculative_tokens=",
                                             "--speculative-config=")) else [arg])]
    for i, arg in enumerate(out[:-1]):
        if arg == "--speculative-config.num_speculative_tokens":
            out[i + 1] = str(tokens)
        elif arg == "--speculative-config" and out[i + 1].lstrip().startswith("{"):
            try:
                config = json.loads(out[i + 1])
            except ValueError:
                raise UsageError(f"The recipe's --speculative-config {out[i + 1][:80]!r} is "
                                 "not JSON; --mtp-tokens cannot change it.") from None
            config["num_speculative_tokens"] = tokens
            out[i + 1] = json.dumps(config, separators=(",", ":"))
    return out


@dataclass(frozen=True)
class RecipeCommand:
    args: list[str]  # admitted by glmkit.policy: canonical spellings
    env: dict[str, str]
    strategy: str
    tp: int
    dp: int
    notes: tuple[str, ...] = ()


def recipe_source(model: ModelSpec, book: RecipeBook | None = None) -> Source:
    """Where a model's recipe command came from, for the input policy. Once recipes are
    synced, the strategies a command merges in come from the synced copy too, so every
    recipe command is synced data then."""
    if book is not None and any(source.kind == "synced" for source in book.sources):
        return Source.SYNCED_RECIPE
    return model.recipe_input


def _recipe_command(s: Settings, model: ModelSpec, target: HardwareTarget, book: RecipeBook
                    ) -> RecipeCommand:
    """The recipe's flags and env for this choice, with --tp/--dp/--mtp-tokens applied."""
    if model.recipe is None or model.variant is None:
        tp = s.tp or 1
        return RecipeCommand(["--tensor-parallel-size", str(tp)] if tp > 1 or target.brand
                             != "CPU" else [], {}, "single_node_tp", tp, s.dp)
    variant = model.recipe.variants[model.variant]
    if target.brand != "CPU" and (why := precision_supported(variant, target, model.variant)):
        raise UsageError(f"{model.id} {why}; {target.describe()} cannot serve it. Choose "
                         "another checkpoint of the family (`invoke models`).")
    strategy = _strategy(s, model, book, target)
    features = default_features(model.recipe)
    if s.mtp or s.spec_mode:
        if "spec_decoding" not in model.recipe.features:
            raise UsageError(f"--{'spec-mode' if s.spec_mode else 'mtp'}: {model.id} has no "
                             "MTP layers (its recipe offers no speculative decoding).")
        features.append("spec_decoding")
    spec_modes = model.recipe.features["spec_decoding"].modes or {} \
        if "spec_decoding" in model.recipe.features else {}
    if s.spec_mode:
        admit_name(s.spec_mode, "--spec-mode")
        if not spec_modes:
            raise UsageError(f"--spec-mode {s.spec_mode}: {model.id}'s recipe has one "
                             "speculative decoding method, no modes; use --mtp.")
        modes = {"spec_decoding": s.spec_mode}
    else:
        modes = {"spec_decoding": "mtp"} if s.mtp and "mtp" in spec_modes else {}
    resolved = resolve(book, model.recipe, model.variant, strategy, target, features, modes)
    # The recipe is data: its flags and environment pass the same policy as the user's.
    admitted = admit_args(resolved.args, recipe_source(model, book))
    admitted_env = admit_env(resolved.env, recipe_source(model, book))
    _check_spec_kept(s, resolved.args, admitted.args, admitted.notes,
                     spec_dropped(book, model.recipe, strategy))
    args = list(admitted.args)
    tp, dp = resolved.parallel_size, 1
    if resolved.parallel_flag == "--data-parallel-size":
        dp = s.dp if s.dp > 1 else resolved.parallel_size
        tp = s.tp or 1
        args = [*drop_flags(args, "--data-parallel-size"), "--data-parallel-size", str(dp)]
        if tp > 1:
            args += ["--tensor-parallel-size", str(tp)]
    else:
        if s.tp:
            tp = s.tp
        args = [*drop_flags(args, "--tensor-parallel-size"), "--tensor-parallel-size", str(tp)]
        if s.dp > 1:
            dp = s.dp
            args += ["--data-parallel-size", str(dp)]
            if model.recipe.is_moe:
                args.append("--enable-expert-parallel")
    if (s.mtp or s.spec_mode) and s.mtp_tokens:
        args = _with_mtp_tokens(args, s.mtp_tokens)
    return RecipeCommand(args, env_dict(admitted_env), strategy, tp, dp,
                         admitted.notes + admitted_env.notes)


def _check_spec_kept(s: Settings, resolved: Sequence[str], admitted: Sequence[str],
                     notes: Sequence[str], dropped: str | None) -> None:
    """Speculative decoding the user asked for is served, or refused with the reason (the
    strategy's, the policy's): never a server quietly started without it."""
    def spec(words: Sequence[str]) -> list[str]:
        return [w for w in words if w.startswith("--speculative-config")]

    if not (s.mtp or s.spec_mode) or spec(admitted) or spec(s.extra_args):
        return
    asked = f"--spec-mode {s.spec_mode}" if s.spec_mode else "--mtp"
    if not spec(resolved):
        why = dropped or "the recipe's command has no --speculative-config here"
        raise UsageError(f"{asked}: {why}; choose another --strategy or drop "
                         f"{asked.split()[0]}.")
    why = next((n for n in notes if "--speculative-config" in n), "left out by the policy")
    at = list(resolved).index(spec(resolved)[0])
    value = one_line(shlex.join(resolved[at:at + 2]), 300)
    raise UsageError(f"{asked}: {why} (it names another repository or host). To take it on "
                     f"your word, pass it after `--`: {value}")


def _check_counts(s: Settings, target: HardwareTarget, here: bool, tp: int, dp: int,
                  gpu_ids: tuple[str, ...] | None) -> None:
    needed = tp * dp
    if gpu_ids is not None and needed > len(gpu_ids):
        raise UsageError(f"Tensor parallel {tp} × data parallel {dp} needs {needed} GPUs, but "
                         f"--gpus {s.gpus} names {len(gpu_ids)}. Lower --tp/--dp or name more "
                         "GPUs.")
    if needed > target.gpu_count and target.brand != "CPU":
        where = "this machine has" if here else "the planned node has"
        raise UsageError(f"Tensor parallel {tp} × data parallel {dp} needs {needed} GPUs; "
                         f"{where} {target.gpu_count}. Pass --tp/--dp to fit.")


def _fit(s: Settings, model: ModelSpec, target: HardwareTarget, recipe: RecipeCommand,
         user_args: Sequence[str], notes: list[str], arch: Arch | None) -> int | None:
    """Refuse what cannot fit before anything is pulled; the max-model-len that fits."""
    from glmkit.knowledge.sizing import (
        estimate_from_recipe,
        fit,
        kv_cache_bytes,
        target_card,
    )

    offload = "--cpu-offload-gb" in flag_names(user_args)
    if target.brand == "CPU" or not model.in_catalog or model.local_dir or s.nodes:
        return None
    tp, dp = recipe.tp, recipe.dp
    # With expert parallelism the experts, most of a GLM's weights, spread over every rank;
    # without it vLLM still shards a MoE's experts over the DP x TP group (DPA+TP).
    sharded = "--enable-expert-parallel" in recipe.args or \
        (dp > 1 and model.recipe is not None and model.recipe.is_moe)
    holders = tp * dp if sharded else tp
    have = round(target.gpu_gb * holders, 1)
    if model.vram_minimum_gb > have and not offload:
        raise UsageError(
            f"{model.id} needs about {model.vram_minimum_gb:g} GB (its recipe's "
            f"vram_minimum_gb); {holders} GPU(s) of {target.describe()} give {have:g} GB "
            f"at TP {tp}. Use a "
            "smaller checkpoint of the family (FP8, NVFP4, MXFP4), more GPUs, two nodes "
            "(`invoke plan --nodes 2`), or offload (`-- --cpu-offload-gb N`).")
    gpu = target_card(target.id or "H100", target.gpu_memory_gb, given=target.memory_given)
    if arch is None:
        # No architecture facts: `invoke plan`'s answer from the recipe's numbers, said.
        estimate = estimate_from_recipe(model, gpu, holders, holders)
        notes.append(f"plan: TP {tp}" + (f" × DP {dp}" if dp > 1 else "") +
                     f" on {target.describe()}, --max-model-len {estimate.max_model_len}, "
                     f"planned {estimate.why}")
        return estimate.max_model_len
    result = fit(model, arch, gpu, holders, model.precision, s.gpu_memory_utilization,
                 holders, kv_cache_bytes(recipe.args), uses_mtp(recipe.args))
    if not result.fits and not result.offload_suffices:
        raise UsageError(
            f"{model.id} does not fit on {tp} × {gpu.name} {gpu.memory_gib:g} GiB, even with "
            "every weight offloaded: too little room for the KV cache. Use more or larger "
            "GPUs (see `invoke plan`).")
    if not result.fits and not offload:
        raise UsageError(
            f"{model.id} does not fit on {tp} × {gpu.name} {gpu.memory_gib:.0f} GiB: "
            f"{result.weights_per_gpu_gb:.0f} {result.unit} of weights per GPU. Use the FP8 "
            "model, more GPUs, or offload: `invoke up ... -- --cpu-offload-gb "
            f"{result.cpu_offload_gb}` (see `invoke plan`).")
    notes.append(f"plan: TP {tp}" + (f" × DP {dp}" if dp > 1 else "") +
                 f" on {target.describe()} ({result.weights_per_gpu_gb:.0f} {result.unit} "
                 f"weights per GPU, {result.kv_budget_per_gpu_gb:.0f} {result.unit} for KV "
                 f"cache: {result.kv_tokens:,} tokens)")
    return result.max_model_len or None


def uses_mtp(args: Sequence[str]) -> bool:
    """The command drafts with the model's own MTP layer (one more layer loaded)."""
    return flag_value(args, "--speculative-config.method") == "mtp" or \
        '"mtp"' in (flag_value(args, "--speculative-config") or "")


def _start_period(model: ModelSpec, arch: Arch | None, recipe: RecipeCommand,
                  target: HardwareTarget, notes: list[str]) -> int:
    """The health check's grace period. On a GPU, from counted weights: start, load,
    compile, CUDA graphs and, for a block FP8 checkpoint only (its format from
    checkpoint_format), the block-FP8 warm-up, as measured on an H200 (gpu_model); else
    (CPU, or no count) a conservative guess."""
    from glmkit.knowledge.gpu_model import block_warmup_caveat, constant, start_period_s
    from glmkit.knowledge.sizing import checkpoint_format, weights_per_gpu_gib

    if target.brand != "CPU" and arch is not None and arch.params is not None:
        weights = weights_per_gpu_gib(arch, model.precision, max(1, recipe.tp))
        if weights is not None:
            fmt = checkpoint_format(model, arch)
            # An FP8 layout glmkit does not know may be block FP8: the longer wait.
            block = fmt.block_fp8 or (fmt.kind == "fp8" and not fmt.layout_known)
            if block:
                caveat = block_warmup_caveat()
                notes.append(f"start_period counts a {constant('block_fp8_warmup_s'):g} s "
                             f"block-FP8 warm-up for {fmt.describe()}"
                             + (f"; that figure was {caveat}" if caveat else ""))
            return start_period_s(weights, block_fp8=block)
    # A conservative guess, no measurement behind it (it came with the first kit, bcd0f14):
    # 300 s, and 5 s per billion parameters for loading. Generous wherever a start was
    # timed: the CPU tiny model's first `up` takes ~1.5 min and its two-container layouts
    # were healthy in 47-87 s on 2 cores (RECIPES.md §10-11); GLM-4.7-Flash (31B) was
    # healthy in 145 s on an H200, where this rule gives 455 s.
    return int(300 + 5 * model.total_params_b)


def _command(model_ref: str, names: tuple[str, ...], recipe: Sequence[str],
             kit: Sequence[str], user: Sequence[str], image: ImageProfile, notes: list[str]
             ) -> ServeCommand:
    """`vllm serve`'s words by layer, without the flags this image's vLLM lacks (said in
    the notes)."""
    recipe_flags, recipe_parallel = parted(recipe, PARALLEL)
    user_flags, user_parallel = parted(user, PARALLEL)
    user_flags, kv = parted(user_flags, (KV_TRANSFER,))
    layers = [recipe_flags, merge_args(recipe_parallel, user_parallel), list(kit), user_flags,
              kv]
    for flag in [a for a in merge_args(*layers) if a.startswith("--")]:
        if not flag_supported(flag.split("=", 1)[0], image.vllm_version):
            layers = [drop_flags(layer, flag.split("=", 1)[0]) for layer in layers]
            notes.append(f"dropped {flag}: vLLM {image.vllm_version} in {image.ref} lacks it")
    recipe_at, parallel, kit_at, user_at, kv_at = (tuple(layer) for layer in layers)
    return ServeCommand(model_ref=model_ref, names=names, recipe=recipe_at, parallel=parallel,
                        kit=kit_at, user=user_at, kv_transfer=kv_at)


def _group_add(vendor: VendorProfile, hw: Hardware) -> tuple[str, ...]:
    return tuple(str(hw.group_ids[g]) if g in hw.group_ids else g for g in vendor.groups)




def build_plan(s: Settings, facts: HostFacts, book: RecipeBook) -> ServePlan:
    """The plan for these settings on the host `facts` describe; portable facts
    (`HostFacts.portable()`) leave out what only holds on this host, for exports that
    run elsewhere. Reads nothing: the same inputs give the same plan."""
    _check_ranges(s)
    notes: list[str] = []
    hw = facts.hardware
    if s.vendor:
        vendor = resolve_vendor(s.vendor)
    else:
        vendor = hw.profile
        notes.append(f"vendor {vendor.name}: detected {hw.describe()}")
    notes.extend(book.notes)
    notes.extend(facts.notes)  # a system folder the command line asked to mount
    # The user's own vLLM flags, decided before anything else reads them.
    user = admit_args(s.extra_args, Source.of_setting(s.extra_args_source))
    if facts.model is None:
        raise UsageError(facts.model_refusal or f"Model {s.model!r} was not resolved.")
    model = facts.model
    if model.local_dir and model.recipe is not None and \
            recipe_source(model) is Source.SYNCED_RECIPE:
        raise UsageError(f"{model.id}: a synced recipe names a host folder (local_dir); host "
                         "mounts come only from glmkit and the user.")
    gpu_ids = _gpu_ids(s.gpus) if s.gpus is not None else None
    target, here = _target(s, vendor, hw, book, gpu_ids, notes)
    recipe = _recipe_command(s, model, target, book)
    notes.extend(recipe.notes)
    if (s.mtp or s.spec_mode) and "--speculative-config" in flag_names(recipe.args):
        # vLLM would merge the user's JSON into the recipe's dotted keys: a drafter neither
        # wrote, rendered side by side.
        refuse_owned(user.args, {"--speculative-config": "--mtp-tokens sets the draft "
                                 "tokens; without --mtp and --spec-mode yours is used"},
                     f"--spec-mode {s.spec_mode}" if s.spec_mode else "--mtp")
    advice: list[str] = []
    if model.recipe is not None and (hw_note := hardware_note(model.recipe, target)):
        advice.append(f"hardware note for {target.describe()}: {hw_note}")
        notes.append(advice[-1])
    tp, dp = recipe.tp, recipe.dp
    _check_counts(s, target, here, tp, dp, gpu_ids)
    fitted_len = _fit(s, model, target, recipe, user.args, notes, facts.arch)
    image = choose_image(model, vendor, image=s.image, vllm_version=s.vllm_version,
                         hw=target, cuda12=s.cuda12 or (here and needs_cuda12_images(hw)),
                         image_from=Source.of_setting(s.image_source))
    if image.why:
        notes.append(f"image {image.ref}: {image.why}")
    if image.moving:
        repository = image_repository(image.ref)
        notes.append(f"warning: {image.ref} is a moving tag ({image.moving}): what it serves "
                     "changes as vLLM publishes. `up` records the digest it ran (run "
                     f"metadata, `invoke status`); pin it with --image {repository}@sha256:…")

    max_len = s.max_model_len or min(DEFAULT_MAX_MODEL_LEN, model.max_context,
                                     fitted_len or model.max_context)
    if max_len > model.max_context:
        raise UsageError(f"--max-model-len {max_len} is above {model.id}'s context limit of "
                         f"{model.max_context} tokens.")

    # The mount policy (glmkit.policy.admit_mount) admitted these folders when the facts
    # were read, symlinks resolved; a refusal is raised here, where they are mounted.
    cache_dir = facts.hf_cache.admitted()
    offline = {"HF_HUB_OFFLINE": "1"} if facts.offline and not model.local_dir else {}
    mounts = [
        # Complete weights (`invoke download`) are mounted read-only: the server only reads.
        Mount(str(cache_dir), CONTAINER_HF_HOME, read_only=bool(offline), kind="bind"),
        Mount(cache_volume(s.project, vendor.name), CONTAINER_VLLM_CACHE, read_only=False,
              kind="volume"),
    ]
    model_dir: Path | None = None
    if model.local_dir:
        if facts.model_dir is None:
            raise UsageError(f"{model.id}: its folder was not read from this host.")
        model_dir = facts.model_dir.admitted()
        model_ref = f"/models/{model_dir.name}"
        mounts.append(Mount(str(model_dir), model_ref, read_only=True, kind="bind"))
    else:
        model_ref = model.id
    served_name = admit_served_name(
        model.id if model.in_catalog else model_ref.rsplit("/", 1)[-1])

    # The policy left out the recipe's `--allowed-local-media-path /`: only a mounted
    # --media-dir may be read.
    # glmkit's own flags, a layer between the recipe's and the user's.
    args: list[str] = ["--max-model-len", str(max_len)]
    if vendor.has_gpus:
        args += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
    else:
        args += ["--dtype", "bfloat16"]  # the CPU backend's fast path
    if s.max_num_batched_tokens:
        args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.bench_mode:
        args.append("--no-enable-prefix-caching")
    args += _kv_offload(s, model, vendor, notes)
    if s.media_dir:
        if not model.vision:
            raise UsageError(f"--media-dir is for vision models; {model.id} is text-only.")
        if facts.media_dir is None:
            raise UsageError("--media-dir was not read from this host.")
        media = facts.media_dir.admitted()
        if not facts.media_dir.is_dir:
            raise UsageError(f"--media-dir {s.media_dir!r} is not a folder.")
        mounts.append(Mount(str(media), CONTAINER_MEDIA, read_only=True, kind="bind"))
        args += ["--allowed-local-media-path", CONTAINER_MEDIA]
    if s.enforce_eager:
        args.append("--enforce-eager")
    # Older images log every request unless told not to; 0.17 removed the flag.
    if vendor.quiet_requests_flag and \
            flag_supported("--disable-log-requests", image.vllm_version):
        args.append("--disable-log-requests")
    aliases = admit_aliases(s.aliases, served_name)
    # vLLM answers to every name given; the first is the one it reports.
    command = _command(model_ref, (served_name, *aliases), recipe.args, args, user.args,
                       image, notes)
    # Flags each admitted alone may combine into code-loading: the recipe's
    # --trust-remote-code with invoke.yaml's choice of repository or revision.
    check_code_loading(user.args, Source.of_setting(s.extra_args_source), recipe.args, args)
    args = list(command.argv())
    if (s.mtp or s.spec_mode) and model.tool_parser and \
            not at_least(image.vllm_version, MTP_TOOL_FIX):
        notes.append(f"warning: with MTP, vLLM {image.vllm_version} can lose streamed tool-call "
                     f"arguments (fixed in vLLM {MTP_TOOL_FIX}); use a newer image or drop --mtp")

    environment = {"HF_HOME": CONTAINER_HF_HOME, **env_dict(admit_env(vendor.env, Source.KIT)),
                   **recipe.env}
    # Weights complete in the cache (`invoke download`): start without the network.
    environment.update(offline)
    if vendor.has_gpus:
        # Where `invoke tune-moe` writes fused-MoE kernel configs, on the cache volume;
        # vLLM falls back to its own when the folder or the file is missing.
        environment["VLLM_TUNED_CONFIG_FOLDER"] = CONTAINER_MOE_CONFIGS
    if vendor.visibility_env and gpu_ids is not None and facts.here:
        environment[vendor.visibility_env] = ",".join(gpu_ids)
    applied = _advisories(model, facts.arch, target, vendor, image, args, environment)
    environment.update(_advisory_env(applied, environment, notes))
    advice += [a.line() for a in applied]
    notes += [a.line() for a in applied]

    devices = vendor.devices + (vendor.privileged_devices if s.privileged else ())
    cap_add = vendor.cap_add + (vendor.privileged_cap_add if s.privileged else ())
    cache = mounts[0]
    if facts.here and not cache.read_only and facts.uid not in (None, 0) and \
            facts.cache_owner_uid == facts.uid:
        # The server runs as root with every capability dropped; to write weights into a
        # cache the invoking (normal) user owns, root needs DAC_OVERRIDE back: only for
        # that cache, never another's (the mount policy refuses those anyway). Not needed
        # once `invoke download` has filled it (then it is mounted read-only).
        cap_add += ("DAC_OVERRIDE",)
        notes.append("the HF cache is yours (a normal user's): the container keeps "
                     "CAP_DAC_OVERRIDE to write downloads there (`invoke download` first "
                     "to run without it)")
    if s.privileged:
        notes.append("--privileged: the container gets every device and capability of the "
                     "host (privileged, /dev/mem, CAP_SYS_ADMIN)")
    if not is_loopback(s.host):
        notes.append(f"the API listens on {s.host}:{s.port}, reachable from other machines")

    start_period = _start_period(model, facts.arch, recipe, target, notes)
    served = decide_facts(model, args)
    return ServePlan(
        project=s.project, model=model, vendor=vendor, image=image,
        served_model_name=served_name, aliases=aliases, command=command,
        environment=environment,
        secret_env=SECRET_ENV, devices=devices, group_add=_group_add(vendor, hw),
        cap_add=cap_add, security_opt=vendor.security_opt, ipc_host=vendor.ipc_host,
        # The shm processor cache (V models) lives in /dev/shm: a private one is sized for it.
        shm_size=None if vendor.ipc_host else shm_size(vendor.shm_size, args),
        privileged=s.privileged,
        gpu_ids=gpu_ids, tensor_parallel=tp, data_parallel=dp, max_model_len=max_len,
        # Docker publishes on addresses, not names.
        host="127.0.0.1" if s.host == "localhost" else s.host, port=s.port,
        mounts=tuple(mounts),
        labels=ServerLabels(version=__version__, project=s.project, model=model.id,
                            vendor=vendor.name, port=s.port, image=image.ref,
                            served_model=served_name, model_ref=model_ref,
                            max_model_len=max_len, strategy=recipe.strategy,
                            # Only what holds: a label's absence is the fact's no.
                            vision=served.vision or None, tiny=served.tiny,
                            exact_answers=served.exact_answers or None).to_labels(),
        start_period_s=start_period, restart=s.restart,
        health_timeout_s=s.health_timeout or max(600, start_period + 600),
        model_dir=model_dir, notes=tuple(notes), strategy=recipe.strategy, target=target,
        facts=served, advisories=tuple(advice),
    )


def advisory_situation(model: ModelSpec, arch: Arch | None, target: HardwareTarget,
                       vendor: VendorProfile, image: ImageProfile | None,
                       args: Sequence[str], environment: Mapping[str, str]) -> Situation:
    """A plan as advisories are matched against it (`invoke plan` has no image: None)."""
    return Situation(
        vendor=vendor.name, gpu=target.id, model=model.id, precision=model.precision,
        experts=arch.experts if arch is not None and arch.experts else None,
        experts_per_token=arch.experts_per_token if arch is not None else None,
        tool_parser=flag_value(args, "--tool-call-parser"), env=dict(environment),
        vllm_version=image.vllm_version if image is not None else None,
        # A nightly is at least the version it is labelled with, maybe past a fix.
        version_floor=image is not None and (bool(image.moving) or
                                             is_nightly_build(image.ref)))


def _advisories(model: ModelSpec, arch: Arch | None, target: HardwareTarget,
                vendor: VendorProfile, image: ImageProfile, args: Sequence[str],
                environment: dict[str, str]) -> tuple[Applied, ...]:
    """The advisories that apply to this plan (knowledge/advisories.yaml); one that
    refuses it and holds for this image's vLLM stops the plan here, with its sources."""
    applied = applicable(advisory_situation(model, arch, target, vendor, image, args,
                                            environment))
    for a in applied:
        if a.kind == "refuse" and a.acts:
            raise UsageError(f"{model.id} on {target.describe()} with vLLM "
                             f"{image.vllm_version}: {a.advisory.action.text} "
                             f"({a.advisory.cited}; glmkit advisory {a.advisory.id}).")
    return applied


def _advisory_env(applied: Sequence[Applied], environment: dict[str, str],
                  notes: list[str]) -> dict[str, str]:
    """The environment entries of the env advisories that act, through the input policy
    like a recipe's; where one replaces the recipe's value, the notes say so."""
    wanted = {k: v for a in applied if a.kind == "env" and a.acts
              for k, v in (a.advisory.action.env or {}).items()}
    admitted = admit_env(wanted, Source.ADVISORY)
    notes.extend(admitted.notes)
    env = env_dict(admitted)
    notes.extend(f"advisory: {k}={v} replaces the recipe's {k}={environment[k]}"
                 for k, v in env.items() if k in environment and environment[k] != v)
    return env
