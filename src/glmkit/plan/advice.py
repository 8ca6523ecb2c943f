"""`invoke plan`: will a model fit these GPUs, in which layout, and how fast can it decode.

Sizing (`sizing`) gives the numbers, the recipes (`resolver`) the layout; this module
puts them side by side as rows a person reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from glmkit.errors import UsageError
from glmkit.host.hardware import Hardware
from glmkit.host.hub import fetch_config, hf_token
from glmkit.host.settings import MAX_COUNT, PlanOptions, Settings, Strategy, check_value, number
from glmkit.host.vendors import VendorName, VendorProfile, resolve_vendor
from glmkit.knowledge.catalog import ModelSpec, resolve_model
from glmkit.knowledge.gpu_model import assumes as gpu_assumes
from glmkit.knowledge.quant_format import QuantFormat
from glmkit.knowledge.recipes import RecipeBook, load_book
from glmkit.knowledge.resolver import (
    KIT_STRATEGIES,
    HardwareTarget,
    Resolved,
    check_strategy,
    default_features,
    hardware_note,
    kv_offload_support,
    offered_strategies,
    recommend_strategy,
    resolve,
    spec_modes,
    strategy_refusal,
)
from glmkit.knowledge.sizing import (
    ASSUMPTIONS,
    MIN_KV_TOKENS,
    Arch,
    GpuSpec,
    PlanReport,
    RecipeEstimate,
    checkpoint_format,
    encoder_cache_gb,
    estimate_from_recipe,
    known_arch,
    kv_cache_bytes,
    model_arch,
    multinode,
    plan_report,
    processor_cache_shm_gb,
    target_card,
)
from glmkit.paths import hf_cache
from glmkit.plan.serve import advisory_situation, choose_target, recipe_source, uses_mtp
from glmkit.vllm_args import flag_value

# Far above any machine, low enough that sizing's loops over TP sizes and batches end.

@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    model: str
    vendor: VendorName | None = None
    gpu: str | None = None
    gpu_count: int | None = None
    gpu_mem: float | None = None
    strategy: Strategy | None = None
    goal: str = PlanOptions.goal
    tp: int | None = None
    batch: int = PlanOptions.batch
    context: int = PlanOptions.context
    gpu_memory_utilization: float = 0.9
    nodes: int | None = None
    hf_cache: str | None = None  # the settings' --hf-cache, as `up` reads it
    models: tuple[str, ...] = ()  # a model group (`model` is its first)
    sleep_level: int | None = None

    def __post_init__(self) -> None:
        """Counts are positive and the memory fraction in (0, 1]: "fits at TP -2" is no
        answer, so such a request is refused where it is made."""
        if self.goal not in ("latency", "throughput"):
            raise UsageError(f"--goal {self.goal[:40]!r}: choose latency or throughput.")
        # The settings' own ranges (one table for every task), then plan's own numbers.
        for name in ("gpu_count", "tp", "gpu_mem", "gpu_memory_utilization"):
            check_value(name, getattr(self, name))
        for option, value in (("--batch", self.batch), ("--context", self.context),
                              ("--nodes", self.nodes)):
            if value is not None and not (isinstance(value, int) and 1 <= value <= MAX_COUNT):
                raise UsageError(f"{option} must be a whole number from 1 to {MAX_COUNT}, "
                                 f"got {value}.")

def plan_request(settings: Settings, *, batch: str | None, context: str | None,
                 goal: str | None) -> PlanRequest:
    """`invoke plan`'s request: the settings' model and hardware, and its own numbers
    (None: not given, the table's default)."""
    return PlanRequest(
        model=settings.model, vendor=settings.vendor, gpu=settings.gpu,
        gpu_count=settings.gpu_count, gpu_mem=settings.gpu_mem, strategy=settings.strategy,
        goal=goal or PlanOptions.goal, tp=settings.tp,
        batch=number(batch or PlanOptions.batch, int, "batch"),
        context=number(context or PlanOptions.context, int, "context"),
        nodes=settings.nodes.count if settings.nodes else None,
        gpu_memory_utilization=settings.gpu_memory_utilization, hf_cache=settings.hf_cache,
        models=settings.models, sleep_level=settings.sleep_level)


def amount(value: float) -> str:
    """A quantity as people write it: 141, 0.5, 147,849,216 (`:g` wrote 1.47849e+08)."""
    return f"{value:,.0f}" if abs(value) >= 1e5 else f"{round(value, 1):g}"


@dataclass(frozen=True)
class Advice:
    title: str
    rows: list[tuple[str, str]]
    multinode: str | None
    assumptions: tuple[str, ...]


ENCODER_TOKENS = 16384  # vLLM's encoder cache budget: max(batched tokens, one item's)


def vision_rows(arch: Arch | None, args: list[str]) -> list[tuple[str, str]]:
    """What a V model adds: the vision tower (replicated on every GPU with
    --mm-encoder-tp-mode data), the encoder cache and the shm processor cache."""
    rows = []
    if arch is not None and arch.vision_params_b:
        where = "a full copy on every GPU (--mm-encoder-tp-mode data)" \
            if flag_value(args, "--mm-encoder-tp-mode") == "data" else "sharded with TP"
        rows.append(("vision tower", f"{arch.vision_params_b:.2f}B parameters "
                     f"({arch.vision_params_b * 2:.1f} GB in BF16, in the total): {where}"))
    if arch is not None and arch.hidden:
        rows.append(("encoder cache", f"{encoder_cache_gb(ENCODER_TOKENS, arch.hidden):.2f} GB "
                     f"per GPU ({ENCODER_TOKENS} image tokens × {arch.hidden} wide, BF16)"))
    shm = processor_cache_shm_gb(args)
    rows.append(("processor cache", f"{shm:g} GB in /dev/shm (--mm-processor-cache-type shm): "
                 "`up` sizes a private shm for it; GPU vendors share the host's (ipc: host)"
                 if shm else "in the API server's memory (no shm cache)"))
    return rows


def _fit_rows(report: PlanReport) -> list[tuple[str, str]]:
    rows = []
    for precision, f in report.fits.items():
        verdict = "no TP size works" if f is None else (
            f"fits at TP {f.tp} ({f.weights_per_gpu_gb:.0f} {f.unit} weights/GPU)" if f.fits else
            f"does not fit: needs --cpu-offload-gb {f.cpu_offload_gb} at TP {f.tp}"
            if f.offload_suffices else f"does not fit at TP {f.tp}, even with every weight "
            f"offloaded (under {MIN_KV_TOKENS:,} tokens of KV cache)")
        rows.append((f"in {precision.upper()}", verdict))
    ch = report.chosen
    rows += [("smallest fit", f"--tensor-parallel-size {ch.tp}, {ch.replicas} data-parallel "
              f"replica(s) on {report.gpu_count} GPUs"),
             ("KV cache", f"{ch.kv_budget_per_gpu_gb:.1f} {ch.unit} per GPU, {ch.kv_tokens:,} "
              "tokens; "
              f"largest --max-model-len {ch.max_model_len}"
              + (f"; maximum concurrency {ch.kv_tokens / report.context:.2f}x at "
                 f"{report.context:,} tokens" if ch.kv_tokens else "")),
             ("CPU offload", f"--cpu-offload-gb {ch.cpu_offload_gb} (crosses PCIe each step: "
              "in the TPOT bound)" if ch.cpu_offload_gb and ch.offload_suffices else
              "not enough: the GPUs are too small for the KV cache alone" if ch.cpu_offload_gb
              else "not needed")]
    if (params := report.arch.params) is not None:
        rows.insert(0, ("parameters", f"{params.total_b:.2f}B total, {params.active_b:.2f}B "
                        f"active, counted from {report.arch.source}"))
    return rows


def _moe_row(arch: Arch, card: GpuSpec, fmt: QuantFormat, tp: int) -> tuple[str, str] | None:
    """Whether vLLM ships a tuned fused-MoE config for this expert shape on this GPU, in
    the checkpoint's format (`block_shape` only for block FP8)."""
    from glmkit.knowledge.gpu_model import moe_config_name, vllm_ships_moe_config

    if not arch.experts or not arch.moe_intermediate:
        return None
    name = moe_config_name(arch.experts, arch.moe_intermediate // tp, card.name, fmt)
    if name is None:  # the quantization row says why (an FP8 layout not known)
        return None
    if vllm_ships_moe_config(name):
        return ("MoE kernels", f"vLLM 0.26.0 ships a tuned config ({name})")
    return ("MoE kernels", f"no tuned config in vLLM 0.26.0 for {name}: default tiles "
            "(`invoke tune-moe` makes one)")


def _fp8_kv_row(spec: ModelSpec, arch: Arch, card: GpuSpec, report: PlanReport,
                request: PlanRequest, mtp: bool) -> tuple[str, str] | None:
    """What `--kv-cache-dtype fp8` gives at the chosen layout, as vLLM sizes it (half the
    bytes per token, and its smaller CUDA-graph estimate measured on an H100): offered for
    long agent sessions, whose context is what runs out. Only with counted parameters."""
    from glmkit.knowledge.sizing import fit

    if arch.params is None or report.chosen.unit != "GiB" or not report.chosen.kv_tokens:
        return None
    bf16 = report.chosen
    fp8 = fit(spec, arch, card, report.gpu_count, spec.precision,
              request.gpu_memory_utilization, bf16.tp, 1.0, mtp)
    if not fp8.kv_tokens:
        return None
    ctx = report.context
    return ("fp8 KV cache", f"for long agent sessions: `invoke up ... -- --kv-cache-dtype fp8` "
            f"holds {fp8.kv_tokens:,} tokens (maximum concurrency {fp8.kv_tokens / ctx:.2f}x "
            f"at {ctx:,} tokens) vs {bf16.kv_tokens:,} ({bf16.kv_tokens / ctx:.2f}x) in BF16. "
            "FP8 keys and values change what the model answers: pass the accuracy gate "
            "(`invoke eval`) with it before serving")


def _recipe_advice(spec: ModelSpec, target: HardwareTarget, card: GpuSpec,
                   estimate: RecipeEstimate, rows: list[tuple[str, str]],
                   recommended: list[tuple[str, str]], nodes: int | None) -> Advice:
    """The plan of a model without architecture facts: what the recipe's numbers say, the
    same answer `render` uses (`plan.serve`)."""
    verdict = "fits" if estimate.fits else "needs more than"
    several = None
    if not estimate.fits:
        # One node is too small: no single-node layout is recommended; the nodes it takes.
        recommended = [row for row in recommended if not row[0].startswith("for ")]
        nodes = nodes or 2
        total = round(nodes * target.gpu_count * card.memory_gb)
        several = (f"{nodes} nodes × {target.gpu_count} GPUs give {amount(total)} GB: the "
                   f"recipe's {estimate.need_gb:g} GB "
                   f"{'fits' if estimate.need_gb <= total else 'does not fit either'}. "
                   "`invoke up --nodes head=HOST1,w1=HOST2 --strategy multi_node_tp`")
    rows += [
        ("smallest fit", f"--tensor-parallel-size {estimate.tp}: the recipe's "
         f"{estimate.need_gb:g} GB {verdict} {estimate.tp} × {card.memory_gib:g} GiB "
         f"({estimate.weights_per_gpu_gb:.0f} GB weights/GPU)"),
        ("context", f"--max-model-len {estimate.max_model_len} (what render serves; the KV "
         "cache per token is unknown without config.json, so a longer context is not sized)"),
        *recommended,
        ("decode bound", f"TPOT ≥ {estimate.tpot_ms:.2f} ms at batch 1 "
         f"({estimate.weights_read_gb:.1f} GB of active weights read per GPU per step; KV "
         "reads and the experts a batch touches need config.json)"),
    ]
    title = (f"{spec.id} on {target.gpu_count} × {card.name} ({card.memory_gib:g} GiB, "
             f"{card.bandwidth_tb_s:g} TB/s)")
    return Advice(title, rows, several, (f"planned {estimate.why}", ASSUMPTIONS[2]))


def advisory_rows(spec: ModelSpec, arch: Arch | None, target: HardwareTarget,
                  vendor: VendorProfile, resolved: Resolved | None, book: RecipeBook
                  ) -> list[tuple[str, str]]:
    """The advisories (knowledge/advisories.yaml) for the image and command `up` would
    use: the same lines `up` prints, one row each."""
    from glmkit.knowledge.advisories import applicable
    from glmkit.knowledge.images import choose_image
    from glmkit.policy import Source, admit_env, env_dict

    try:
        image = choose_image(spec, vendor, hw=target) if target.brand != "CPU" else None
    except UsageError:  # what `up` refuses it says itself; the version is not known here
        image = None
    environment = env_dict(admit_env(vendor.env, Source.KIT))
    if resolved is not None:
        environment.update(env_dict(admit_env(resolved.env, recipe_source(spec, book))))
    args = list(resolved.args) if resolved is not None else []
    situation = advisory_situation(spec, arch, target, vendor, image, args, environment)
    return [("advisory", a.line().removeprefix("advisory ")) for a in applicable(situation)]


def advise(request: PlanRequest, hw: Hardware, env: Mapping[str, str]) -> Advice:
    spec = resolve_model(request.model, env)
    book = load_book(env)
    vendor = resolve_vendor(request.vendor) if request.vendor else hw.profile
    target, here, note = choose_target(book, vendor, hw, gpu=request.gpu,
                                    gpu_count=request.gpu_count, gpu_mem=request.gpu_mem)
    # The same check as `up`'s; a multi-node strategy is planned as what each node runs.
    layout = check_strategy(book, spec.recipe, request.strategy, target, request.nodes) \
        if request.strategy else None
    detected = hw.gpus[0].name if hw.gpus and hw.vendor == vendor.name else None
    card = target_card(target.id or request.gpu or detected or "GPU", target.gpu_memory_gb,
                       given=target.memory_given)
    count = target.gpu_count
    cache = hf_cache(env, request.hf_cache)
    fetch = None if spec.local_dir or not spec.in_catalog else \
        lambda: fetch_config(spec.id, cache, hf_token(env), env)
    # A recipe's model without readable architecture facts is planned from the recipe.
    arch = known_arch(spec, cache, fetch) if spec.recipe is not None else \
        model_arch(spec, cache, fetch)
    estimate = estimate_from_recipe(spec, card, count, request.tp) if arch is None else None
    fmt = checkpoint_format(spec, arch)
    rows: list[tuple[str, str]] = [("model", (
        f"{spec.total_params_b:g}B total / {spec.active_params_b:g}B active, {arch.layers} "
        f"layers, {arch.heads} heads, {arch.kv_heads} KV heads × {arch.head_dim} (facts "
        f"from {arch.source})") if arch is not None else
        f"{spec.total_params_b:g}B total / {spec.active_params_b:g}B active; planned "
        f"{estimate.why if estimate else ''}")]
    rows.append(("quantization", fmt.labelled()))
    if note:
        rows.append(("hardware", note))
    if here and hw.gpus:
        card = replace(card, memory_source=f"{hw.gpus[0].memory_mib:,} MiB reported by this "
                       "host's GPU")
    rows.append(("GPU memory", f"{card.memory_gib:g} GiB per GPU: {card.memory_source}"))
    resolved: Resolved | None = None
    recommended: list[tuple[str, str]] = []
    if spec.recipe is not None and spec.variant is not None:
        for aim in ("latency", "throughput"):
            name, why = recommend_strategy(spec.recipe, aim, target)
            mtp = " --mtp" if aim == "latency" and spec.has_mtp else ""
            recommended.append((f"for {aim}", f"--strategy {name}{mtp}: {why}"))
        # pd_cluster has checks of its own (glmkit.plan.pd): not listed from here.
        newer = [n for n in book.strategies if n not in KIT_STRATEGIES and n != "pd_cluster"
                 and n in offered_strategies(spec.recipe, target)]
        why_not = {n: strategy_refusal(book, spec.recipe, n, target) for n in newer}
        if usable := [f"--strategy {n}" for n in newer if why_not[n] is None]:
            recommended.append(("also offered", ", ".join(usable)))
        if refused := [f"{n} ({why})" for n, why in why_not.items() if why]:
            recommended.append(("not offered", "; ".join(refused)))
        if hw_note := hardware_note(spec.recipe, target):
            rows.append(("hardware note", hw_note))
        if modes := spec_modes(spec.recipe, spec.variant, target):
            rows.append(("spec decoding", f"--spec-mode {modes}"))
        if kv := kv_offload_support(spec.recipe):
            how = "; --kv-offload-gb N renders vLLM's native CPU offloading " \
                "(--kv-offloading-size N --kv-offloading-backend native)" \
                if "offloading_cpu" in kv else ""
            rows.append(("KV offload", f"{kv} (the recipe's kv_offload_support){how}"))
        strategy = layout or recommend_strategy(spec.recipe, request.goal, target)[0]
        resolved = resolve(book, spec.recipe, spec.variant, strategy, target,
                           default_features(spec.recipe))
        ep = " --enable-expert-parallel" if "--enable-expert-parallel" in resolved.args else ""
        rows.append(("recipe layout", f"{strategy}: {resolved.parallel_flag} "
                     f"{resolved.parallel_size}{ep}"))
    rows += advisory_rows(spec, arch, target, vendor, resolved, book)
    kv_bytes = kv_cache_bytes(resolved.args) if resolved else 2.0
    if spec.vision:
        rows += vision_rows(arch, list(resolved.args) if resolved else [])
    if estimate is not None:
        return _recipe_advice(spec, target, card, estimate, rows, recommended, request.nodes)
    assert arch is not None
    drafts = resolved is not None and uses_mtp(resolved.args)
    report = plan_report(spec, arch, card, count, batch=request.batch, context=request.context,
                         utilization=request.gpu_memory_utilization, tp=request.tp,
                         kv_bytes=kv_bytes, mtp=drafts)
    rows += _fit_rows(report)
    if moe := _moe_row(arch, card, fmt, report.chosen.tp):
        rows.append(moe)
    if spec.vram_minimum_gb:
        verdict = "fits" if spec.vram_minimum_gb <= target.vram_gb else "needs more than"
        rows.append(("recipe check", f"vram_minimum_gb {spec.vram_minimum_gb:g} GB {verdict} "
                     f"the node's {amount(target.vram_gb)} GB ({target.describe()})"))
    rows.append(("KV cache dtype", "fp8 (the recipe's, on this GPU): half the bytes"
                 if kv_bytes == 1.0 else "bf16 (vLLM's default)"))
    if kv_bytes != 1.0 and (offer := _fp8_kv_row(spec, arch, card, report, request, drafts)):
        rows.append(offer)
    rows += recommended
    if report.impossible_tp:
        rows.append(("impossible TP", "; ".join(f"{t}: {why}" for t, why in
                                                sorted(report.impossible_tp.items())[:4])))
    d = report.decode
    capped = f"; {report.capped}" if report.capped else ""
    what, sign = ("decode estimate", "≈") if d.calibrated else ("decode bound", "≥")
    bound = f", bound {d.bound_ms:.2f} ms" if d.calibrated else ""
    rows.append((what, f"TPOT {sign} {d.tpot_ms:.2f} ms at batch {report.batch} × "
                 f"{report.context} tokens{capped} ({d.weights_read_gb:.1f} GB weights + "
                 f"{d.kv_read_gb:.1f} GB KV read per GPU per step{bound}; "
                 f"{d.distinct_experts:.0f} experts touched per layer)"))
    node_count = request.nodes or (2 if not report.chosen.fits else 1)
    several = None
    if node_count > arch.layers:
        # PP across the nodes: vLLM gives every stage at least one decoder layer.
        raise UsageError(f"--nodes {node_count}: pipeline parallel over the nodes gives each "
                         f"at least one layer, and {spec.id} has {arch.layers}; plan for at "
                         f"most {arch.layers} nodes.")
    if node_count > 1:
        mn = multinode(spec, arch, card, count, node_count, spec.precision,
                       request.gpu_memory_utilization)
        several = (f"{node_count} nodes × {count} GPUs: TP {mn.tp} × PP {mn.pp} "
                   f"({mn.weights_per_gpu_gb:.0f} GB weights per GPU) "
                   f"{'fits' if mn.fits else 'does not fit either'}. Between nodes per "
                   f"generated token: {mn.pp_bytes_per_token / 1e3:.0f} KB of activations "
                   f"with PP across nodes, vs {mn.tp_bytes_per_token / 1e6:.1f} MB of "
                   f"all-reduce with TP across them. `invoke up --nodes head=HOST1,w1=HOST2 "
                   f"--tp {mn.tp} --pp {mn.pp}`")
    title = (f"{spec.id} on {count} × {card.name} ({card.memory_gib:g} GiB, "
             f"{card.bandwidth_tb_s:g} TB/s)")
    assumes = tuple(ASSUMPTIONS) if arch.params is None else \
        (ASSUMPTIONS[0].split(";")[0] + " (counted from config.json)", *gpu_assumes())
    return Advice(title, rows, several, assumes)


def advise_all(request: PlanRequest, hw: Hardware, env: Mapping[str, str]) -> list[Advice]:
    """`invoke plan`: one model's advice, or a model group's: each member's, sized at the
    group's utilization, and the group's own."""
    if len(request.models) > 1:
        return group_advice(request, hw, env)
    return [advise(request, hw, env)]


def group_advice(request: PlanRequest, hw: Hardware, env: Mapping[str, str]) -> list[Advice]:
    """Each member planned on the GPUs alone, at the utilization that leaves room for the
    sleeping ones; then what the group costs: GPU memory kept asleep, host memory at sleep
    level 1, and each switch's time, from the figures measured on an H100."""
    from glmkit.host.facts import available_memory_gib
    from glmkit.knowledge.gpu_model import constant
    from glmkit.knowledge.sizing import weights_per_gpu_gib
    from glmkit.knowledge.sleep_model import (
        asleep_gib,
        host_memory_gib,
        provenance,
        room,
        switch_estimate,
    )
    from glmkit.plan.group import bytes_per_param, sleep_refusal

    if request.nodes:
        raise UsageError("A model group runs on one machine: leave out --nodes.")
    if len(set(request.models)) != len(request.models):
        twice = next(m for m in request.models if request.models.count(m) > 1)
        raise UsageError(f"The model group names {twice!r} twice: a group serves each model "
                         "once.")
    book = load_book(env)
    vendor = resolve_vendor(request.vendor) if request.vendor else hw.profile
    target, here, _ = choose_target(book, vendor, hw, gpu=request.gpu,
                                    gpu_count=request.gpu_count, gpu_mem=request.gpu_mem)
    refusal = sleep_refusal(vendor, target.id)
    if refusal and vendor.has_gpus:
        raise UsageError(f"A model group needs vLLM's sleep mode: {refusal}.")
    rows: list[tuple[str, str]] = []
    utilization = request.gpu_memory_utilization
    if refusal:
        rows.append(("sleep mode", f"none: {refusal}; the models stay in memory side by side"))
    else:
        detected = hw.gpus[0].name if hw.gpus and hw.vendor == vendor.name else None
        card = target_card(target.id or request.gpu or detected or "GPU",
                           target.gpu_memory_gb, given=target.memory_given)
        shared = room(card.memory_gib, len(request.models), utilization,
                      constant("cuda_reserved_gib"))
        if shared.utilization < 0.05:
            raise UsageError(f"A model group of {len(request.models)} on {card.memory_gib:g} "
                             f"GiB GPUs: the sleeping ones keep {shared.asleep_gib:.1f} GiB per "
                             "GPU, which leaves no room for the awake one. Name fewer models.")
        utilization = shared.utilization
        rows += [("GPU memory", f"{card.memory_gib:g} GiB per GPU: the awake model takes "
                  f"{shared.awake_gib:.1f} GiB at --gpu-memory-utilization "
                  f"{shared.utilization:.2f}"
                  + (f" (lowered from {shared.lowered_from:g})" if shared.lowered_from else "")
                  + f", {len(request.models) - 1} asleep keep {shared.asleep_gib:.1f} "
                  f"({asleep_gib():g} GiB each), {shared.spare_gib:.1f} GiB spare")]
    members = [advise(replace(request, model=m, models=(), gpu_memory_utilization=utilization),
                      hw, env) for m in request.models]
    weights: list[float | None] = []
    cache = hf_cache(env, request.hf_cache)
    for m in request.models:
        spec = resolve_model(m, env)
        arch = known_arch(spec, cache) if spec.recipe is not None else model_arch(spec, cache)
        counted = weights_per_gpu_gib(arch, spec.precision, 1) if arch is not None else None
        weights.append(counted or (spec.total_params_b * bytes_per_param(spec.precision)
                                   * 1e9 / 2**30) or None)
    level = request.sleep_level or 1
    if not refusal:
        known = [w for w in weights if w is not None]
        need = host_memory_gib(known, [resolve_model(m, env).id for m in request.models]) \
            if len(known) == len(weights) else None
        have = available_memory_gib() if here else None
        if need is not None:
            verdict = " (this host's memory not checked: planned for other hardware)" \
                if have is None else (
                f"; this host has {have:.0f} GiB available" + (
                    ": level 1 does not fit, `up` serves at level 2" if need > have and
                    request.sleep_level is None else ": --sleep-level 1 is refused here"
                    if need > have else ""))
            rows.append(("host memory", f"sleep level 1 keeps the sleeping models' weights "
                         f"in host memory: {need:.0f} GiB at worst{verdict}"))
            if have is not None and need > have and request.sleep_level is None:
                level = 2
        names = list(request.models)
        for i, a in enumerate(names):  # A -> B, B -> C, ..., back to A
            b = names[(i + 1) % len(names)]
            wa, wb = weights[i], weights[(i + 1) % len(names)]
            if a == b or wa is None or wb is None:
                continue
            e = switch_estimate(level, wa, wb, constant("load_gib_per_s"))
            how = (f"sleep {e.sleep_s:.1f} s ({wa:.0f} GiB to host memory) + wake "
                   f"{e.wake_s:.1f} s" if level == 1 else
                   f"sleep {e.sleep_s:.2f} s + wake {e.wake_s:.2f} s + reading {wb:.0f} GiB "
                   f"from disk {e.reload_s:.0f} s (assumed {constant('load_gib_per_s'):g} "
                   "GiB/s)")
            rows.append((f"switch {a} -> {b}", f"about {e.total_s:.1f} s at sleep level "
                         f"{level}: {how} + first answer {e.first_s:.2f} s, after the awake "
                         "model's running requests finish"))
    rows.append(("cannot", "serve two models at once: a request for a sleeping model waits "
                 "for the switch, and the awake model's new requests wait behind it"))
    title = f"model group: {len(request.models)} models behind one port, one awake at a time"
    return [*members, Advice(title, rows, None,
                             (f"sleep figures {provenance()}; times scaled by the bytes each "
                              "step moves",) if not refusal else ())]
