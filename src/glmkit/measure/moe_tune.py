"""`invoke tune-moe`: vLLM's fused-MoE kernel tuned for the served model on this host's
GPUs, inside the serving container (its own vLLM, Triton and GPU), with the tuner in
measure/moe_tuner.py copied in, as the agentic client is.

The file lands on the kit's vLLM cache volume, in the folder every GPU plan names with
VLLM_TUNED_CONFIG_FOLDER, which vLLM searches before its own configs: so the tuner's
baseline is what vLLM would use without it (the config vLLM ships for the shape, else its
default tiles) and a file is installed only where it beats that (moe_tuner.py). The shape
is one rank's, as vLLM splits the layer (gpu_model.MoeSplit: TP, or the experts over the
ranks with expert parallelism); a cluster is refused, as the file would reach one node.
The tuner runs in a process group of its own, named in a lease file; when the command
ends by a timeout, Ctrl-C or an error, the group is killed and the lease removed, so no
tuner keeps running to write the file a later `up` reads.

Measured on an H200 for GLM-4.7-Flash (E=64, N=1536, BF16, against the default tiles, as
vLLM ships no config for it): the kernel alone 1.09x faster at 16 tokens, 1.01x at 64;
served TPOT and throughput at concurrency 16 and 64 unchanged within noise (docs/gpu.md).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glmkit.errors import GlmkitError, UsageError
from glmkit.host.vendors import resolve_vendor
from glmkit.knowledge import quant_format
from glmkit.knowledge.gpu_model import MoeSplit, moe_split
from glmkit.labels import ServerLabels
from glmkit.plan.serve import CONTAINER_MOE_CONFIGS
from glmkit.process import run
from glmkit.run.server import running_server

TUNER = Path(__file__).with_name("moe_tuner.py")
# What the tuner reads the checkpoint's quantization_config with, copied beside it.
QUANT_FORMAT = Path(quant_format.__file__)
CONTAINER_TMP = "/tmp/glmkit-moe"
LEASE = f"{CONTAINER_TMP}/tuner.lease"
GRACE_S = 5  # from SIGTERM to SIGKILL, for the tuner's group
# Run by the image's Python in the container: wait a moment for the lease (the tuner
# writes it first thing), then end the group it names. The path is an argument, not code.
STOP_GROUP = (
    "import os, signal, sys, time\n"
    "lease, grace = sys.argv[1], float(sys.argv[2])\n"
    "for _ in range(50):\n"
    "    try:\n"
    "        group = int(open(lease).read().strip())\n"
    "        break\n"
    "    except (OSError, ValueError):\n"
    "        time.sleep(0.1)\n"
    "else:\n"
    "    sys.exit(0)\n"
    "if group > 1:\n"
    "    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):\n"
    "        try:\n"
    "            os.killpg(group, sig)\n"
    "        except ProcessLookupError:\n"
    "            break\n"
    "        end = time.monotonic() + wait\n"
    "        while time.monotonic() < end:\n"
    "            try:\n"
    "                os.killpg(group, 0)\n"
    "            except ProcessLookupError:\n"
    "                sys.exit(0)\n"
    "            time.sleep(0.1)\n"
)


class BatchResult(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    baseline_us: float = Field(ge=0, le=1e9)
    tuned_us: float = Field(ge=0, le=1e9)
    speedup: float = Field(ge=0, le=1e6)
    kept: str | None = Field(default=None, max_length=20)


class TunerSummary(BaseModel):
    """The tuner's result line, read back from the container's output (data: checked)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    file: str = Field(max_length=300)
    installed: str = Field(pattern="^(installed|removed|none)$")
    baseline: str = Field(pattern="^(shipped|default)$")
    candidates_tried: int = Field(ge=0, le=100_000)
    batch_sizes: dict[str, BatchResult] = Field(max_length=64)
    dtype: str = Field(default="bf16", max_length=20)


@dataclass(frozen=True)
class TuneMoeResult:
    container: str
    split: MoeSplit
    summary: TunerSummary


def refusal(vendor: str) -> str | None:
    """Why this server's kernels cannot be tuned, or None."""
    if not resolve_vendor(vendor).has_gpus:
        return ("invoke tune-moe tunes vLLM's fused-MoE Triton kernel on a GPU; the CPU "
                "image runs the experts with its own CPU kernels, which have no such config.")
    return None


def server_split(labels: ServerLabels, serve_args: tuple[str, ...]) -> MoeSplit:
    """One rank's split as the server's vLLM makes it, or a UsageError (one line) for a
    layout whose file this command cannot make and place where every rank reads it."""
    if (labels.nodes or 1) > 1 or labels.engine:
        raise UsageError(
            f"invoke tune-moe tunes a server on one machine; this is a {labels.engine or ''} "
            f"cluster of {labels.nodes or 'several'} nodes, whose other nodes read the tuned "
            "folder on their own cache volume. Tune a one-node server with the same layout.")
    try:
        return moe_split(serve_args)
    except ValueError as err:
        raise UsageError(f"invoke tune-moe cannot name the file this server's vLLM looks "
                         f"for: {err}.") from None


def tune_moe(project: str, budget_s: float | None) -> TuneMoeResult:
    if budget_s is None or not 10 <= budget_s <= 3600:  # None: --budget ""; nan fails too
        raise UsageError(f"--budget {budget_s}: give seconds from 10 to 3600.")
    container_obj, target = running_server(project)
    if reason := refusal(target.vendor):
        raise UsageError(reason)
    split = server_split(ServerLabels.from_labels(container_obj.labels), target.serve_args)
    container = target.container
    run(["docker", "exec", container, "mkdir", "-p", CONTAINER_TMP, CONTAINER_MOE_CONFIGS])
    try:
        for source in (TUNER, QUANT_FORMAT):
            run(["docker", "cp", str(source), f"{container}:{CONTAINER_TMP}/{source.name}"])
        # The server keeps its memory: the tuner gets what is left of the GPU.
        tuner = ["docker", "exec", container, "python3", f"{CONTAINER_TMP}/{TUNER.name}",
                 "--model", target.model_ref, "--tp", str(split.tp), "--ep", str(split.ep),
                 "--out", CONTAINER_MOE_CONFIGS, "--budget-s", f"{budget_s:g}",
                 "--lease", LEASE]
        try:
            done = run(tuner, timeout=budget_s + 900)
        except (GlmkitError, KeyboardInterrupt):
            # `docker exec` ends its client, not the process in the container: end that.
            stop_tuner(container)
            raise
    finally:
        # The lease goes with the folder: a tuner that survived installs nothing.
        run(["docker", "exec", container, "rm", "-rf", CONTAINER_TMP], check=False)
    return TuneMoeResult(container=container, split=split, summary=tuner_summary(done.stdout))


def stop_tuner(container: str) -> None:
    """Kill the tuner's process group in the container (SIGTERM, then SIGKILL). Where
    that fails too, the lease's removal still keeps it from installing anything."""
    with contextlib.suppress(GlmkitError):
        run(["docker", "exec", container, "python3", "-c", STOP_GROUP, LEASE, str(GRACE_S)],
            check=False, timeout=GRACE_S + 30)


def tuner_summary(stdout: str) -> TunerSummary:
    """The tuner's last JSON line; a clear error where there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                data: Any = json.loads(line)
                return TunerSummary.model_validate(data)
            except (ValueError, ValidationError):
                continue
    raise UsageError("The tuner printed no result; see `invoke logs`.")
