"""User settings, resolved in one place and in one written-down order.

    code default  <  invoke.yaml (`glmkit:` section)  <  GLMKIT_* environment  <  flag

Every value remembers where it came from, so `invoke config` can show it. The
environment is passed in rather than read at import time, so tests pass `env={}`.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

from glmkit.errors import UsageError
from glmkit.knowledge.catalog import TINY_MODEL_ID
from glmkit.policy import check_setting_sources


@dataclass(frozen=True, kw_only=True)
class Settings:
    project: str = "glmkit"
    vendor: str | None = None  # None: what the machine has
    model: str = TINY_MODEL_ID
    image: str | None = None
    vllm_version: str | None = None  # of a custom --image
    host: str = "127.0.0.1"
    port: int = 8000
    tp: int | None = None  # None: the catalog's default for the model
    dp: int = 1
    gpus: str | None = None  # "0,1,2,3"; None: all
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    mtp: bool = False
    mtp_tokens: int | None = None  # None: the recipe's draft-token count
    # Hardware to plan for instead of what is detected: a taxonomy id (h200, mi355x) or a
    # GPU name with --gpu-mem; and the recipes' strategy names.
    gpu: str | None = None
    gpu_count: int | None = None
    gpu_mem: float | None = None
    strategy: str | None = None
    cuda12: bool = False  # the -cu129 image tags, for NVIDIA drivers older than CUDA 13 needs
    bench_mode: bool = False  # --no-enable-prefix-caching, as the recipes bench
    privileged: bool = False
    enforce_eager: bool = False
    media_dir: str | None = None
    hf_cache: str | None = None
    health_timeout: int | None = None
    extra_args: tuple[str, ...] = ()
    # Beyond one machine (glmkit.plan.cluster): "2" simulates two nodes on this engine;
    # "head=ssh://gpu1,w1=ssh://gpu2" drives each machine's Docker engine.
    nodes: str | None = None
    engine: str = "mp"  # mp (vLLM native), dp (data parallel), ray
    pp: int | None = None
    gpus_per_node: int | None = None
    ifname: str | None = None  # NIC for gloo/NCCL (GLOO_/NCCL_SOCKET_IFNAME)
    rdma: bool = False
    # Docker restarts the server after a crash or a reboot; `no` for throwaway servers.
    restart: str = "unless-stopped"
    # Which layer gave extra_args (not a setting): glmkit.policy lets only the command
    # line ask for flags that load code.
    extra_args_source: str = "default"


def _coerce(name: str, hint: Any, value: Any) -> Any:
    text = str(value).strip()
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
        raise UsageError(f"{name}: expected true or false, got {text!r}.")
    if "int" in str(hint) and "float" not in str(hint):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{name}: expected a whole number, got {text!r}.") from None
    if "float" in str(hint):
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{name}: expected a number, got {text!r}.") from None
    return text


def resolve_settings(
    flags: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Merge the layers; `None` in a layer means "not set there"."""
    check_section(config)
    hints = get_type_hints(Settings)
    known = {f.name for f in fields(Settings)} - {"extra_args_source"}
    for layer_name, layer in (("invoke.yaml", config or {}), ("flag", flags)):
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
    check_setting_sources(values, sources)
    values["extra_args_source"] = sources["extra_args"]
    return dataclasses.replace(Settings(), **values), sources


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
           minimum: float | None = None) -> Any:
    """An optional numeric option given as text; a usage error when it is not a number
    (or is below `minimum`)."""
    try:
        result = None if value in (None, "") else kind(value)
    except ValueError:
        raise UsageError(f"--{option}: expected a number, got {value!r}.") from None
    if result is not None and minimum is not None and not result >= minimum:
        raise UsageError(f"--{option} must be at least {minimum:g}, got {value}.")
    return result
