"""The trust boundary: one policy decides which arguments, environment entries and host
mounts may reach a container, whatever their source.

Sources are ranked by trust (see SECURITY.md, "Threat model"):

- `kit`: what glmkit itself adds (ports, served name, vendor environment). Checked for
  well-formed words only.
- `command line`: the person at the terminal. May ask for anything but the flags glmkit
  owns and secrets, code-loading flags included.
- `invoke.yaml` and `environment` (GLMKIT_EXTRA_ARGS): the user's, but a file in a
  checkout or a variable set by a script can carry them unseen, so flags that load or run
  code must be given on the command line.
- `built-in recipe`: reviewed data shipped with glmkit; may keep `--trust-remote-code`.
- `synced recipe`: data from the internet. Its flags must not load code, redirect
  traffic or name files; its environment is limited to an allow-list of exact names; it
  mounts nothing.

Flags are decided on the name vLLM's own parser (`FlexibleArgumentParser`, vLLM 0.32)
would act on: `_` becomes `-` between `--` and the first `.`, `--flag=value` splits at the
first `=`, `--a.b value` sets key `b` of the JSON option `--a`. Prefixes (argparse's
abbreviations) and names vLLM 0.32 (the CPU image's own parser) does not know are refused,
so what is checked is
exactly what vLLM acts on; every accepted flag is written in its canonical spelling.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError


class Source(Enum):
    KIT = "glmkit"
    COMMAND_LINE = "command line"
    INVOKE_YAML = "invoke.yaml"
    ENVIRONMENT = "environment"
    BUILTIN_RECIPE = "built-in recipe"
    SYNCED_RECIPE = "synced recipe"
    ADVISORY = "advisory"  # glmkit.knowledge.advisories: a known fault's workaround

    @classmethod
    def of_setting(cls, layer: str) -> Source:
        """The source of a setting from `settings.resolve_settings`' layer names. "default"
        is a Settings built by the kit's own code (files it reads back never build one
        directly: they are a layer of their own, at most invoke.yaml's); any other name
        is refused, never taken for the command line."""
        known = {"flag": cls.COMMAND_LINE, "default": cls.COMMAND_LINE,
                 "invoke.yaml": cls.INVOKE_YAML, "environment": cls.ENVIRONMENT}
        if layer not in known:
            raise UsageError(f"Settings from an unknown layer {str(layer)[:40]!r}: refused "
                             "(flags, invoke.yaml and GLMKIT_* are the layers there are).")
        return known[layer]

    @property
    def is_user(self) -> bool:
        return self in (Source.COMMAND_LINE, Source.INVOKE_YAML, Source.ENVIRONMENT)

    def describe(self) -> str:
        return {Source.ENVIRONMENT: "GLMKIT_EXTRA_ARGS", Source.KIT: "glmkit",
                Source.COMMAND_LINE: "the command line"}.get(self, f"the {self.value}")


# --- vLLM's flags -------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One option of `vllm serve`: its canonical spelling and how many words it takes."""

    name: str  # the canonical long form, --tensor-parallel-size
    nargs: str  # "0" (a switch), "1", "?", "*" or "+", as argparse counts them
    dest: str  # what it sets: --enable-x and --no-enable-x set the same


@dataclass(frozen=True)
class FlagTable:
    vllm_version: str
    options: Mapping[str, Option]  # every spelling vLLM accepts exactly → its option

    def lookup(self, spelling: str) -> Option | None:
        return self.options.get(spelling)

    def nearest(self, spelling: str) -> str | None:
        longs = sorted({o.name for o in self.options.values()})
        prefixed = [name for name in longs if name.startswith(spelling)]
        if len(prefixed) == 1:
            return prefixed[0]
        close = difflib.get_close_matches(spelling, longs, n=1, cutoff=0.75)
        return close[0] if close else None


@functools.lru_cache(maxsize=1)
def vllm_flags() -> FlagTable:
    """The options of `vllm serve` in glmkit's CPU image (scripts/vllm_flags.py makes
    the file from the image's own parser; an integration test keeps it current)."""
    text = resources.files("glmkit").joinpath("data/vllm-serve-options.json").read_text()
    data = json.loads(text)
    options = {spelling: Option(entry["name"], str(entry["nargs"]), entry["dest"])
               for spelling, entry in data["options"].items()}
    return FlagTable(str(data["vllm_version"]), {**FORMER_OPTIONS, **options})


# Options older images know and this vLLM dropped (glmkit.knowledge.images.VERSIONED_FLAGS says
# which images take them; `plan` drops them for the others).
FORMER_OPTIONS = {"--disable-log-requests": Option("--disable-log-requests", "0",
                                                   "disable_log_requests")}


# Flags glmkit sets itself: letting another source set them would undo its choices (where
# the API listens, what it is called, which files it may read, which model it serves).
RESERVED = frozenset({"--host", "--port", "--uds", "--served-model-name", "--model",
                      "--allowed-local-media-path", "--headless",
                      # where nodes meet: glmkit's cluster plan sets these (`--nodes`)
                      "--master-addr", "--master-port", "--nnodes", "--node-rank",
                      "--data-parallel-address", "--data-parallel-rpc-port",
                      "--data-parallel-start-rank"})
RESERVED_HINT = {"--host": "--host", "--port": "--port", "--served-model-name": "--model",
                 "--model": "--model", "--allowed-local-media-path": "--media-dir"}
# Secrets on a command line land in the compose file, `docker inspect` and `ps`.
SECRET = frozenset({"--api-key", "--hf-token"})
# Flags that load or run code chosen by whoever wrote the value: Python classes and
# modules, plugin files, a model repository's own code, another file of arguments.
CODE = frozenset({"--trust-remote-code", "--tool-parser-plugin", "--reasoning-parser-plugin",
                  "--middleware", "--logits-processors", "--worker-extension-cls",
                  "--worker-cls", "--scheduler-cls", "--config", "--io-processor-plugin",
                  "--log-config-file", "--logging-config"})
# Keys inside JSON options that name a Python module or class to import.
CODE_KEYS = frozenset({"kv_connector_module_path", "ec_connector_module_path",
                       "kv_connector_extra_config_module_path", "worker_cls",
                       "worker_extension_cls", "pass_config_module_path", "inductor_passes",
                       "model_class_overrides"})
# Keys that name code only when their value is a dotted Python path ("inductor" is fine,
# "evil.backend" is not).
CODE_PATH_KEYS = frozenset({"backend"})
# What a synced recipe may not set even though the user may: where data goes (traces,
# origins, TLS files), what is logged, which files or repositories are read.
USER_ONLY = frozenset({"--otlp-traces-endpoint", "--collect-detailed-traces",
                       "--enable-log-requests", "--enable-log-outputs", "--allowed-origins",
                       "--allowed-methods", "--allowed-headers", "--allow-credentials",
                       "--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs", "--ssl-cert-reqs",
                       "--enable-ssl-refresh", "--download-dir", "--tokenizer",
                       "--chat-template", "--hf-overrides", "--model-loader-extra-config",
                       "--load-format", "--generation-config", "--response-role",
                       "--allowed-media-domains", "--hf-config-path", "--revision",
                       "--code-revision", "--tokenizer-revision", "--speculative-config.model",
                       "--lora-modules", "--enable-lora", "--prompt-embeds",
                       "--enable-prompt-embeds", "--root-path", "--profiler-config",
                       "--mm-encoder-fp8-scale-save-path", "--mm-encoder-fp8-scale-path",
                       # other repositories, other hosts, other ports, more client control
                       "--spec-model", "--tool-server", "--kv-transfer-config",
                       "--kv-events-config", "--ec-transfer-config", "--grpc",
                       "--weight-transfer-config", "--trust-request-chat-template",
                       "--trust-request-mm-kwargs", "--quantization-config",
                       "--compilation-config", "--model-class-overrides",
                       "--enable-tokenizer-info-endpoint", "--tokenizer-mode"})
# Keys inside any JSON option that a synced recipe may not set: other repositories and
# other hosts.
USER_ONLY_KEYS = frozenset({"model", "draft_model", "tokenizer", "revision", "kv_ip",
                            "endpoint", "url", "host", "address"})

MAX_WORD = 16 * 1024
MAX_WORDS = 512


def _cut(text: str, limit: int = 60) -> str:
    """Text from outside as a message shows it: at most `limit` characters of it."""
    return text if len(text) <= limit else text[:limit] + "…"


def _short(value: Any) -> str:
    return repr(_cut(str(value)))


def _well_formed(word: str, what: str) -> str:
    if not isinstance(word, str):
        raise UsageError(f"{what}: {_short(word)} is not text.")
    if "\0" in word:
        raise UsageError(f"{what} contains a NUL character.")
    if len(word) > MAX_WORD:
        raise UsageError(f"{what} is longer than {MAX_WORD} characters.")
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text.") from None
    return word


@dataclass(frozen=True)
class Flag:
    """One flag as vLLM will read it: canonical name, dotted keys, value words."""

    name: str  # canonical, --speculative-config
    dest: str
    keys: tuple[str, ...]  # ("num_speculative_tokens",) for --speculative-config.num_...
    values: tuple[str, ...]
    joined: bool  # given as --flag=value

    @property
    def spelling(self) -> str:
        return ".".join((self.name, *self.keys))

    def words(self) -> list[str]:
        if len(self.values) == 1 and (self.joined or self.values[0].startswith("-")):
            return [f"{self.spelling}={self.values[0]}"]
        return [self.spelling, *self.values]


def _looks_negative(word: str) -> bool:
    return bool(re.fullmatch(r"-\d+(\.\d*)?|-\.\d+", word))


def parse_flags(words: Sequence[str], source: Source) -> list[Flag]:
    """Words after the model into flags, with vLLM's parser's own reading of each."""
    if len(words) > MAX_WORDS:
        raise UsageError(f"More than {MAX_WORDS} vLLM arguments from {source.describe()}.")
    table = vllm_flags()
    where = f"vLLM argument from {source.describe()}"
    flags: list[Flag] = []
    i = 0
    while i < len(words):
        word = _well_formed(words[i], where)
        i += 1
        if not word.startswith("-") or _looks_negative(word):
            raise UsageError(f"{where}: {_short(word)} is not a flag (the model is glmkit's "
                             "--model; values follow their flag).")
        head, joined, value = word.partition("=")
        keys: tuple[str, ...] = ()
        if not word.startswith("--"):
            option = table.lookup(head)
            if option is None:
                raise UsageError(f"{where}: {_cut(head)} is not a vLLM option; write options in "
                                 "full, e.g. --tensor-parallel-size.")
            name = option.name
        else:
            # vLLM's rule: `_` → `-` between `--` and the first `.`; the rest are keys.
            base, dot, rest = head.partition(".")
            spelled = "--" + base[2:].replace("_", "-")
            keys = tuple(rest.split(".")) if dot else ()
            if dot and (not all(keys) or (keys[-1].endswith("+") and len(keys[-1]) == 1)):
                raise UsageError(f"{where}: {_short(head)} is not a valid dotted option.")
            option = table.lookup(spelled)
            if option is None or option.name != spelled:
                hint = table.nearest(spelled)
                raise UsageError(
                    f"{where}: {_cut(head)} is not an option of vLLM {table.vllm_version}"
                    + (f"; did you mean {hint}?" if hint else "; write options in full.")
                    + " (prefixes and unknown names are refused)")
            name = option.name
        values: list[str] = []
        if joined:
            values.append(_well_formed(value, where))
        elif keys or option.nargs == "1":
            if i >= len(words):
                raise UsageError(f"{where}: {_cut(head)} needs a value.")
            values.append(_well_formed(words[i], where))
            i += 1
        elif option.nargs in ("*", "+", "?"):
            while i < len(words) and (not words[i].startswith("-")
                                      or _looks_negative(words[i])):
                values.append(_well_formed(words[i], where))
                i += 1
                if option.nargs == "?":
                    break
            if option.nargs == "+" and not values:
                raise UsageError(f"{where}: {_cut(head)} needs at least one value.")
        if option.nargs == "0" and values:
            raise UsageError(f"{where}: {_cut(head)} is a switch and takes no value.")
        flags.append(Flag(name, option.dest, keys, tuple(values), bool(joined)))
    return flags


def _json_items(value: Any) -> Iterable[tuple[str, Any]]:
    """Every (key, value) pair at any depth of a JSON value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key), item
            yield from _json_items(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_items(item)


def _items(flag: Flag) -> list[tuple[str, Any]]:
    """The keys a flag sets: its dotted keys and every key of a JSON value, at any depth."""
    value: Any = flag.values[0] if len(flag.values) == 1 else None
    try:
        parsed = json.loads(value) if value is not None else None
    except (ValueError, RecursionError):
        parsed = None
    items: list[tuple[str, Any]] = []
    for key in flag.keys:
        items.append((key.rstrip("+"), parsed if key == flag.keys[-1] else None))
    if isinstance(parsed, Mapping | list):
        items += list(_json_items(parsed))
    return items


def _unparsed_json(flag: Flag) -> str | None:
    """Why a value written as JSON (it starts with `{` or `[`) does not parse, else None."""
    for value in flag.values:
        if value.lstrip()[:1] in ("{", "["):
            try:
                json.loads(value)
            except RecursionError:
                return "nested too deep"
            except ValueError as err:
                return str(err)[:80]
    return None


def _code_keys(flag: Flag) -> list[str]:
    """Keys of a JSON option (given as JSON or dotted) that import Python code."""
    found = []
    for key, value in _items(flag):
        if key in CODE_KEYS or (key in CODE_PATH_KEYS and isinstance(value, str)
                                and "." in value):
            found.append(key)
    if flag.keys and flag.keys[-1].rstrip("+") in CODE_PATH_KEYS and flag.values \
            and "." in flag.values[0]:
        found.append(flag.keys[-1])
    return found


def _user_only(flag: Flag) -> bool:
    return flag.name in USER_ONLY or flag.spelling in USER_ONLY or any(
        key in USER_ONLY_KEYS for key, _ in _items(flag))


@dataclass(frozen=True)
class Admitted:
    """What passed the policy: canonical words, and notes on what was left out."""

    args: tuple[str, ...]
    notes: tuple[str, ...]


def admit_args(words: Sequence[str], source: Source) -> Admitted:
    """Decide every flag of `words` from `source`: canonical words, or a UsageError.

    A synced recipe's code-loading or user-only flags are left out with a note (the
    built-in data and the user decide those); from anyone else they are an error."""
    out: list[str] = []
    notes: list[str] = []
    for flag in parse_flags(words, source):
        name = flag.name
        if source is Source.KIT:
            out += flag.words()
            continue
        if source in (Source.BUILTIN_RECIPE, Source.SYNCED_RECIPE) and (
                name in RESERVED or name in SECRET):
            # A recipe's `--allowed-local-media-path /` and the like: glmkit sets these.
            if source is Source.SYNCED_RECIPE:
                notes.append(f"left out {_cut(flag.spelling)} from the synced recipe: glmkit "
                             "sets it")
            continue
        if name in RESERVED:
            hint = RESERVED_HINT.get(name)
            raise UsageError(f"{name} from {source.describe()} is set by glmkit"
                             + (f"; use glmkit's {hint} instead." if hint else "."))
        if name in SECRET:
            raise UsageError(f"{name} from {source.describe()} would write a secret into the "
                             "compose file and the process list; set VLLM_API_KEY / HF_TOKEN "
                             "in the environment (or --api-key-file) instead.")
        if (bad := _unparsed_json(flag)) is not None:
            # Its keys cannot be checked, so it is not admitted (the policy fails closed).
            if source is Source.SYNCED_RECIPE:
                notes.append(f"left out {_cut(flag.spelling)} from the synced recipe: its value is "
                             f"not valid JSON ({bad})")
                continue
            raise UsageError(f"{_cut(flag.spelling)} from {source.describe()}: its value is not "
                             f"valid JSON ({bad}).")
        code = name in CODE or bool(_code_keys(flag))
        what = name if name in CODE else f"{_cut(flag.spelling)} ({', '.join(_code_keys(flag))})"
        if source is Source.SYNCED_RECIPE and (code or _user_only(flag)):
            left = what if code else _cut(flag.spelling)
            notes.append(f"left out {left} from the synced recipe: "
                         + ("it loads code; pass it after `--` on the command line to allow "
                            "it" if code else "only the user sets it"))
            continue
        if code and source is Source.BUILTIN_RECIPE and name != "--trust-remote-code":
            raise UsageError(f"The built-in recipe sets {what}, which loads code.")
        if code and source in (Source.INVOKE_YAML, Source.ENVIRONMENT):
            raise UsageError(f"{what} from {source.describe()} loads code; give it on the "
                             "command line (after `--`) to allow it.")
        out += flag.words()
    return Admitted(tuple(out), tuple(notes))


def flag_names(words: Sequence[str]) -> set[str]:
    """Canonical names in already-admitted words (for the checks that follow)."""
    return {flag.name for flag in parse_flags(words, Source.KIT)}


def merge_args(*layers: Sequence[str]) -> list[str]:
    """Admitted argument lists in order, keeping each option's last setting (a later layer
    overrides an earlier one; `--x` and `--no-x` are one option, as in vLLM's parser)."""
    flags = [flag for layer in layers for flag in parse_flags(layer, Source.KIT)]
    keys = [(flag.dest, flag.keys) for flag in flags]
    return [word for i, flag in enumerate(flags) if keys[i] not in keys[i + 1:]
            for word in flag.words()]


# --- code-loading as a combination ------------------------------------------------------

# With --trust-remote-code, vLLM runs the Python code of every repository it loads a config,
# tokenizer or model from: these flags and JSON keys name one (a draft model, a config repo,
# a generation config, an `auto_map` pointing into another repository), so each of them
# chooses whose code runs. (--lora-modules and --default-mm-loras name adapters, which
# vLLM reads as weights and a PEFT config, never with remote code.)
CODE_SELECTORS = frozenset({"--tokenizer", "--hf-config-path", "--spec-model",
                            "--generation-config"})
# --generation-config's words that name no folder or repository.
_GENERATION_CONFIG_BUILTIN = frozenset({"auto", "vllm"})
CODE_SELECTOR_KEYS = frozenset({"model", "draft_model", "tokenizer", "hf_config_path",
                                "auto_map"})
# Which commit of a repository the code comes from: a branch, a tag or `refs/pr/N` (a pull
# request anyone can open) moves under the user; a full commit hash does not.
REVISIONS = frozenset({"--revision", "--code-revision", "--tokenizer-revision"})
REVISION_KEYS = frozenset({"revision", "code_revision", "tokenizer_revision"})
_COMMIT = re.compile(r"[0-9a-f]{40}")


def trusts_remote_code(words: Sequence[str]) -> bool:
    """Whether admitted words, read as vLLM reads them, end with --trust-remote-code on."""
    held = False
    for flag in parse_flags(words, Source.KIT):
        if flag.dest == "trust_remote_code":
            held = flag.name == "--trust-remote-code"
    return held


def check_code_loading(user: Sequence[str], source: Source,
                       *others: Sequence[str]) -> None:
    """Refuse the user's flags that choose whose code runs, when they come from invoke.yaml
    or the environment and the command (the other layers `others`, then `user`, merged as
    vLLM reads them) holds --trust-remote-code: a checkout or a script must not pick the
    repository, config, draft model or moving revision the trusted code comes from."""
    if source not in (Source.INVOKE_YAML, Source.ENVIRONMENT) or \
            not trusts_remote_code(merge_args(*others, user)):
        return
    where = source.describe()
    allow = "give it on the command line (after `--`) to allow it."
    for flag in parse_flags(user, Source.KIT):
        if flag.name in CODE_SELECTORS and not (
                flag.name == "--generation-config" and not flag.keys
                and flag.values and flag.values[-1] in _GENERATION_CONFIG_BUILTIN):
            raise UsageError(f"{_cut(flag.spelling)} from {where} chooses whose code runs under "
                             f"--trust-remote-code; {allow}")
        if keys := sorted({key for key, _ in _items(flag) if key in CODE_SELECTOR_KEYS}):
            raise UsageError(f"{_cut(flag.spelling)} from {where} sets {', '.join(keys)}, which "
                             f"chooses whose code runs under --trust-remote-code; {allow}")
        revisions = [(flag.spelling, flag.values[-1] if flag.values else "")] \
            if flag.name in REVISIONS and not flag.keys else []
        # A dotted key's value is the word as given (vLLM reads `--a.revision 1234` as text
        # where it is not JSON); a JSON value's revisions are its strings.
        dotted = flag.keys[-1].rstrip("+") if flag.keys else None
        revisions += [(f"{_cut(flag.spelling)} ({key})",
                       flag.values[-1] if key == dotted and flag.values else value)
                      for key, value in _items(flag) if key in REVISION_KEYS]
        for what, value in revisions:
            if not (isinstance(value, str) and _COMMIT.fullmatch(value)):
                raise UsageError(
                    f"{what} {_short(value)} from {where}: with --trust-remote-code a "
                    "revision from invoke.yaml or the environment must be a 40-hex commit "
                    "(a branch, tag or refs/pr/N moves to whatever is pushed); pin a commit, "
                    "or " + allow)


# --- environment ----------------------------------------------------------------------------

# Exactly these names may come from a recipe: performance switches the recipes use. A
# prefix would admit VLLM_PLUGINS, VLLM_SERVER_DEV_MODE, VLLM_API_KEY or NCCL_NET_PLUGIN.
RECIPE_ENV = frozenset({
    "SAFETENSORS_FAST_GPU", "VLLM_USE_FLASHINFER_MOE_FP4", "VLLM_USE_FLASHINFER_MOE_FP8",
    "VLLM_USE_FLASHINFER_MOE_MXFP4_BF16", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8",
    "VLLM_FLASHINFER_MOE_BACKEND", "VLLM_USE_FLASHINFER_SAMPLER", "VLLM_USE_DEEP_GEMM",
    "VLLM_USE_TRTLLM_ATTENTION", "VLLM_ATTENTION_BACKEND", "VLLM_MLA_DISABLE",
    "VLLM_USE_V2_MODEL_RUNNER", "VLLM_VIDEO_LOADER_BACKEND", "VLLM_ALLOW_LONG_MAX_MODEL_LEN",
    "VLLM_ROCM_USE_AITER", "VLLM_ROCM_USE_AITER_MHA", "VLLM_ROCM_USE_AITER_MLA",
    "VLLM_ROCM_USE_AITER_MOE", "VLLM_ROCM_USE_AITER_LINEAR", "VLLM_ROCM_USE_AITER_RMSNORM",
    "VLLM_ROCM_USE_AITER_FP8BMM", "VLLM_ROCM_USE_AITER_FP4BMM",
    "VLLM_ROCM_USE_AITER_FUSION_SHARED_EXPERTS", "VLLM_ROCM_QUICK_REDUCE_QUANTIZATION",
    "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_MOE_DP_CHUNK_SIZE",
    "NCCL_NVLS_ENABLE", "NCCL_MNNVL_ENABLE", "NCCL_CUMEM_ENABLE", "NCCL_P2P_LEVEL",
    "NCCL_IB_DISABLE", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM",
    # GLM-5.3-Flash (upstream, 2026-10): a start-up deadline and an AITER kernel switch.
    "VLLM_ENGINE_READY_TIMEOUT_S", "VLLM_ROCM_USE_AITER_TRITON_SPARSE_MLA",
    # pd_cluster: layouts both pools must share for NIXL, and UCX's interface choice
    "VLLM_KV_CACHE_LAYOUT", "VLLM_SSM_CONV_STATE_LAYOUT", "UCX_NET_DEVICES",
})
# Names only glmkit sets, from any source but its own.
SECRET_ENV = frozenset({"HF_TOKEN", "VLLM_API_KEY", "HUGGING_FACE_HUB_TOKEN"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ENV_VALUE = 1024


def admit_env(env: Mapping[str, Any], source: Source) -> Admitted:
    """Environment entries for the container; a recipe's outside RECIPE_ENV are left out
    with a note, a malformed name or value is an error."""
    out: dict[str, str] = {}
    notes: list[str] = []
    for raw_name, raw in env.items():
        name, value = str(raw_name), str(raw)
        if not _ENV_NAME.fullmatch(name):
            raise UsageError(f"Environment name {name[:60]!r} from {source.describe()} is not "
                             "a plain variable name.")
        _well_formed(value, f"Environment value of {name} from {source.describe()}")
        if any(ch in value for ch in "\n\r") or len(value) > MAX_ENV_VALUE:
            raise UsageError(f"Environment value of {name} from {source.describe()} holds a "
                             f"line break or is over {MAX_ENV_VALUE} characters.")
        # An advisory's workaround is data like a recipe's switches: the same names only.
        if source in (Source.BUILTIN_RECIPE, Source.SYNCED_RECIPE, Source.ADVISORY) and \
                name not in RECIPE_ENV:
            notes.append(f"left out {name} from the {source.value}: not one of the variables "
                         "a recipe may set (glmkit.policy.RECIPE_ENV)")
            continue
        if name in SECRET_ENV and source is not Source.KIT:
            raise UsageError(f"{name} from {source.describe()}: secrets reach the container "
                             "from glmkit's environment by name only.")
        out[name] = value
    return Admitted(tuple(f"{k}={v}" for k, v in out.items()), tuple(notes))


def env_dict(admitted: Admitted) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in admitted.args)


# --- host mounts ----------------------------------------------------------------------------

# Never mounted, nor anything inside them: the host's system, its devices and the Docker
# socket (a container that can reach it owns the host).
_SYSTEM = ("/proc", "/sys", "/dev", "/etc", "/boot", "/run", "/var/run", "/usr", "/bin",
           "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/var/lib/docker",
           "/var/lib/containerd", "/var/lib/kubelet", "/var/spool", "/var/log", "/snap")
# Never mounted, nor any folder that holds them.
_SENSITIVE = ("/var/run/docker.sock", "/run/docker.sock", "/etc", "/var/lib/docker",
              "/var/lib/containerd", "/var/lib/kubelet", "/var/spool/cron", "/home")
# The user's keys, under their home folder (the home folder itself holds them too).
_HOME_SECRETS = (".ssh", ".gnupg", ".aws", ".docker", ".kube", ".config/gcloud", ".netrc",
                 ".git-credentials", ".password-store")


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def other_homes(home: Path) -> list[Path]:
    """Other people's home folders: every folder in /home, /root, and the home of every
    login account (uid 1000 and up) but `home`. Their files (and keys) are theirs, even
    where this user may read them."""
    import pwd

    found = {Path("/root")}
    with contextlib.suppress(OSError):  # no /home
        found.update(p for p in Path("/home").iterdir() if p.is_dir())
    found.update(Path(entry.pw_dir) for entry in pwd.getpwall()
                 if entry.pw_uid >= 1000 and entry.pw_dir.startswith("/")
                 and entry.pw_dir not in ("/", "/nonexistent", "/tmp"))
    resolved = set()
    for folder in found:
        try:
            resolved.add(folder.resolve())
        except (OSError, RuntimeError):
            continue
    return sorted(h for h in resolved if h != home and not _under(home, h))


# Linux's limits (NAME_MAX, PATH_MAX less its NUL): past them every system call on the path
# fails with ENAMETOOLONG, an OSError wherever the path is first touched.
NAME_MAX = 255
PATH_MAX = 4095


def admit_path(path: str | Path, what: str) -> Path:
    """A host path as given, checked for shape before anything touches it: text, no NUL
    or line break, every component at most NAME_MAX bytes and the whole at most PATH_MAX;
    else one UsageError that quotes it short. Every path option passes here first (mounts,
    and the others' folders: `report --runs`, `bench-data --out`, `recipes sync --from`)."""
    text = str(path)
    shown = repr(text[:60] + ("…" if len(text) > 60 else ""))
    if not text.strip() or any(ch in text for ch in "\n\r\0"):
        raise UsageError(f"{what} {shown} is empty or holds a line break or NUL.")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError(f"{what} {shown} is not valid UTF-8 text.") from None
    longest = max(len(part.encode("utf-8")) for part in text.split("/"))
    if size > PATH_MAX or longest > NAME_MAX:
        raise UsageError(f"{what} {shown} is too long for a path ({size:,} bytes; at most "
                         f"{PATH_MAX:,}, and {NAME_MAX} for each name in it).")
    return Path(text)


# Where the system keeps its state: a folder here belongs to a program or a package, not
# to the user, however its owner reads (root owns them all: for root ownership proves
# nothing). From invoke.yaml or the environment such a folder is refused; from the command
# line it is mounted with a note. /var/tmp is anyone's scratch space.
SYSTEM_PREFIXES = ("/etc", "/usr", "/boot", "/var", "/opt", "/srv")
_NOT_SYSTEM = ("/var/tmp",)


def system_prefix(path: Path) -> str | None:
    """The system prefix `path` is under (resolved paths only), or None."""
    if any(_under(path, Path(free)) for free in _NOT_SYSTEM):
        return None
    return next((prefix for prefix in SYSTEM_PREFIXES if _under(path, Path(prefix))), None)


def _owned(path: Path, uid: int) -> tuple[bool, int | None]:
    """(whether the folder is the user's, the owner read): an existing folder by its
    owner; a missing one is made by the user (`up` creates it), so its nearest existing
    parent must be the user's, or a sticky scratch folder anyone may make folders in."""
    import stat

    probe = path
    while True:
        try:
            info = probe.stat()
            break
        except FileNotFoundError:
            if probe == probe.parent:
                return False, None
            probe = probe.parent
        except OSError:
            return False, None
    if probe == path:
        return info.st_uid == uid, info.st_uid
    scratch = bool(info.st_mode & stat.S_ISVTX and info.st_mode & stat.S_IWOTH)
    return info.st_uid == uid or scratch, info.st_uid


@dataclass(frozen=True)
class MountAdmitted:
    """A host folder the policy admitted: absolute, symlink-free, and a note to show."""

    path: Path
    note: str | None = None


def admit_host_folder(path: str | Path, what: str, home: Path, base: Path | None = None, *,
                      source: Source = Source.COMMAND_LINE, uid: int | None = None
                      ) -> MountAdmitted:
    """The absolute, symlink-free host path for a bind mount, or a UsageError.

    A relative path is taken from `base` (the working directory), never from the compose
    file's folder, and symlinks are resolved so the check sees what Docker mounts. Then
    by ownership: the container runs as root, which reads and writes whatever the folder
    holds, so it must be the invoking user's (`uid`, default os.getuid()), from any source;
    under a system prefix (SYSTEM_PREFIXES) outside the user's home it is refused from
    every source but the command line, where it comes with a note."""
    import os

    text = str(admit_path(path, what))
    shown = repr(text[:60] + ("…" if len(text) > 60 else ""))
    raw = Path(text).expanduser()
    if not raw.is_absolute():
        raw = (base or Path.cwd()) / raw
    try:
        resolved = raw.resolve()
        home = home.expanduser().resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, a folder we may not read
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "a loop"
        raise UsageError(f"{what} {shown} cannot be resolved: {reason}.") from None
    secrets = [home / s for s in _HOME_SECRETS]
    held = [Path(s) for s in _SENSITIVE] + secrets + [home]
    others = other_homes(home)
    if resolved == Path("/") or any(_under(resolved, Path(root)) for root in _SYSTEM) \
            or any(_under(resolved, s) for s in secrets + others) \
            or any(_under(s, resolved) for s in held + others):
        raise UsageError(f"{what} {shown} ({str(resolved)[:80]}) would give the container a "
                         "system folder, the Docker socket, your home folder, your keys or "
                         "another user's home; choose a folder of its own (e.g. "
                         "~/.cache/huggingface).")
    uid = os.getuid() if uid is None else uid
    # A normal user's home is theirs wherever it is (a service account's under /var/lib).
    mine = uid != 0 and home != Path("/") and _under(resolved, home)
    prefix = None if mine else system_prefix(resolved)
    if prefix and (source is not Source.COMMAND_LINE):
        # A folder's own name says which variable gave it ('(HF_HOME)'); the environment
        # layer is described by its extra-args variable elsewhere.
        origin = "the environment" if source is Source.ENVIRONMENT else source.describe()
        raise UsageError(f"{what} {shown} from {origin} is under {prefix}, where "
                         "the system keeps its state; give it on the command line to mount "
                         "it, or choose a folder of your own.")
    owned, owner = _owned(resolved, uid)
    if not owned:
        whose = "nobody can tell whom" if owner is None else f"uid {owner}"
        raise UsageError(f"{what} {shown} ({str(resolved)[:80]}) belongs to {whose}, not to "
                         f"you (uid {uid}); root in the container would read and write "
                         "everything in it. Choose a folder you own.")
    note = (f"{what} {str(resolved)[:80]} is under {prefix}, where the system keeps its "
            "state: mounted because the command line asked") if prefix else None
    return MountAdmitted(resolved, note)


def admit_mount(path: str | Path, what: str, home: Path, base: Path | None = None, *,
                source: Source = Source.COMMAND_LINE, uid: int | None = None) -> Path:
    """`admit_host_folder`'s path alone, for a folder given on the command line."""
    return admit_host_folder(path, what, home, base, source=source, uid=uid).path


# --- images -----------------------------------------------------------------------------------

# Where a synced recipe may pin an image from: vLLM's own repositories. Any other image
# would run with the GPUs, the HF cache and the secrets whatever the flags say.
OFFICIAL_REPOSITORIES = frozenset({"vllm/vllm-openai", "vllm/vllm-openai-rocm",
                                   "docker.io/vllm/vllm-openai",
                                   "docker.io/vllm/vllm-openai-rocm"})
_IMAGE_REF = re.compile(r"[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9][a-z0-9._-]*)*"
                        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


def image_repository(ref: str) -> str:
    """`ref` without its digest and tag: a registry's port (localhost:5000/vllm) stays, as
    a tag never holds a '/'."""
    return re.sub(r":[A-Za-z0-9_][A-Za-z0-9_.-]*$", "", re.sub(r"@sha256:[0-9a-f]+$", "", ref))


KIT_REPOSITORY = "glmkit/"  # images glmkit builds from docker/ (glmkit.knowledge.images)


def image_origin(source: Source) -> str:
    """Where an --image came from, in the words of the option that set it."""
    return {Source.INVOKE_YAML: "invoke.yaml's image", Source.ENVIRONMENT: "GLMKIT_IMAGE",
            }.get(source, "--image")


def admit_image(ref: str, source: Source) -> str | None:
    """An image reference that may run: well formed from anyone; from a synced recipe
    one of vLLM's official repositories (None: not this one); from invoke.yaml or the
    environment, which a checkout or a script sets unseen, an official repository or
    glmkit's own (which tags of it glmkit builds, `choose_image` decides). An image is
    code run with the GPUs, the HF cache and the secrets: any other needs the command line."""
    if len(ref) > 255 or not _IMAGE_REF.fullmatch(ref):
        raise UsageError(f"Image {ref[:80]!r} from {source.describe()} is not an image "
                         "reference (registry/name:tag).")
    repository = image_repository(ref)
    if source is Source.SYNCED_RECIPE and repository not in OFFICIAL_REPOSITORIES:
        return None
    if source in (Source.INVOKE_YAML, Source.ENVIRONMENT) and \
            repository not in OFFICIAL_REPOSITORIES and not ref.startswith(KIT_REPOSITORY):
        raise UsageError(f"{image_origin(source)} {ref!r} is not one of vLLM's official "
                         "images nor one glmkit builds; an image runs with your GPUs, HF cache "
                         "and secrets, so give another one on the command line (--image).")
    return ref


# A vLLM release (0.28.0, v0.29.1rc1) or `nightly`: it becomes an image tag, a recipe's
# floor and the text of messages.
VLLM_VERSION = r"^(nightly|v?[0-9]+(\.[0-9]+){0,3}([.+-]?[A-Za-z0-9.]+)?)$"


def admit_vllm_version(value: str) -> str:
    """--vllm-version as a version (0.33.0, v0.29.1rc1, nightly), or a UsageError."""
    if len(value) > 40 or not re.fullmatch(VLLM_VERSION, value):
        raise UsageError(f"--vllm-version {value[:40]!r} is not a vLLM version (0.33.0, "
                         "v0.29.1rc1 or nightly).")
    return value


# --- model ids ----------------------------------------------------------------------------------

# A Hub repo id as the Hub accepts it (huggingface_hub's validate_repo_id): org/name, each
# at most 96 of A-Z a-z 0-9 . _ -, neither starting nor ending with . or -, no .. or --.
# It becomes the first word of `vllm serve` and the served name: it never starts with `-`.
_HUB_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")


def is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) == 2 and all(_HUB_PART.fullmatch(p) for p in parts)
            and ".." not in name and "--" not in name and not name.endswith(".git"))


# --- names that select from a recipe ---------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def admit_name(value: str, what: str) -> str:
    """A name a user picks from a recipe (a --spec-mode): one short word, or a UsageError.
    It selects recipe data and is never itself written into a command or file."""
    if not _NAME.fullmatch(value):
        raise UsageError(f"{what} {value[:64]!r} is not a name: 1-64 of A-Z a-z 0-9 . _ -, "
                         "starting with a letter or digit.")
    return value


# Names a client may ask the server for (`--aliases`): model ids such as
# claude-sonnet-4-5, gpt-5-codex or org/model:tag. They become words after
# `--served-model-name`, so none may start with `-` or hold a space or a `$`.
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}")
MAX_ALIASES = 16


def admit_served_name(name: str) -> str:
    """The name a model folder serves under (its own name): a word after
    `--served-model-name` (vLLM's) and `--member` (the model group's door), as aliases are,
    so it may not start with `-`; a UsageError says to rename the folder."""
    if name.startswith("-"):
        raise UsageError(f"The model folder's name {name[:64]!r} starts with '-': vLLM would "
                         "read it as an option. Rename the folder.")
    return name


def admit_aliases(value: str | None, served_name: str) -> tuple[str, ...]:
    """`--aliases a,b`: more names the server answers to, after its own; a UsageError
    names the first bad one."""
    if value is None:
        return ()
    names = [n.strip() for n in value.split(",")]
    if len(names) > MAX_ALIASES:
        raise UsageError(f"--aliases: at most {MAX_ALIASES} names, got {len(names)}.")
    for name in names:
        if not _ALIAS.fullmatch(name):
            raise UsageError(f"--aliases: {name[:64]!r} is not a model name: 1-128 of A-Z a-z "
                             "0-9 . _ : @ / + -, starting with a letter or digit, separated "
                             "by commas.")
    if twice := next((n for n in names if n == served_name or names.count(n) > 1), None):
        raise UsageError(f"--aliases: {twice!r} is named twice (the server already answers "
                         f"to {served_name!r}).")
    return tuple(names)


# --- settings that only the command line may turn on -----------------------------------------

# Root on the host: a checkout's invoke.yaml or an inherited variable must not ask for it.
COMMAND_LINE_ONLY = frozenset({"privileged"})


def check_setting_sources(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    for name in COMMAND_LINE_ONLY:
        if values.get(name) and sources.get(name) not in ("flag", "default"):
            raise UsageError(f"{name} from {sources[name]}: give --{name} on the command line; "
                             "it makes the container root on the host.")
