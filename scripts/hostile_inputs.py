"""Try hostile inputs on the real command line and print what each got, as a table.

Each case runs `invoke ...` as a user would (from the checkout, its own GLMKIT_HOME and
HF cache, a secret in the environment) and records the exit code, the first line of the
error (or the rendered fact that matters) and whether the intended outcome holds: a
refusal with one line and no traceback, or a render in which the input stays inert (or
the dangerous combination is absent). A few reproductions are a library call or another
script, where no command reaches them without a GPU or a server; a few are not tried here
at all and say what tries them.

No Docker engine is reached: DOCKER_HOST is a stand-in that records each request and
answers as an empty engine that can do nothing (503 for anything that would act), and
`docker` on PATH records its arguments before the real CLI runs against that stand-in.
So a case can require a refusal before anything reached the engine, or that the user's
default project was never named; compose files and results the cases write are put back
as they were.

    python scripts/hostile_inputs.py [--markdown] [-k TEXT]
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_HOSTILE_SECRET_42"
LONG = "Z" * 5000  # a value no message should echo whole
# Characters that reorder or hide text on a terminal, and the C0/C1 controls.
HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029"
                    "\u202a-\u202e\u2066-\u2069]")


@dataclass
class Outcome:
    """What a case did: its exit, its output, the compose file it rendered, what reached
    the engine, and what it cost."""

    code: int
    stdout: str
    stderr: str
    text: str = ""  # compose/hostile.yaml for `render`, else the output
    docker_calls: list[list[str]] = field(default_factory=list)  # argv after `docker`
    engine_requests: list[str] = field(default_factory=list)  # request lines, unquoted
    changed: list[str] = field(default_factory=list)  # compose files written or changed
    seconds: float = 0.0
    rss_mib: float = 0.0

    @property
    def out(self) -> str:
        return self.stderr + self.stdout

    def names_project(self, project: str) -> bool:
        """A `docker` call or an engine request for `project`, or its file written."""
        label = f"com.docker.compose.project={project}\""
        return any(project in (call[i + 1] for i, w in enumerate(call[:-1]) if w == "-p")
                   for call in self.docker_calls) or f"{project}.yaml" in self.changed \
            or any(label in request for request in self.engine_requests)

    @property
    def reached_engine(self) -> bool:
        """A request to the engine, or a `docker` call other than `compose config` (which
        reads the file only)."""
        return bool(self.engine_requests) or any(
            call[:1] != ["compose"] or "config" not in call for call in self.docker_calls)


@dataclass
class Case:
    category: str
    what: str
    argv: list[str]
    env: dict[str, str]
    # "refused": non-zero, one line, no traceback. "inert": exit 0, `check` holds on the
    # compose text (render) or the output. "either": one of the two, `verify` holding in
    # both. "bounded": no traceback, exit 0 or a refusal, within `limits`. "untouched":
    # whatever the exit, no traceback and `verify` holds. "untried": not run here (`why`).
    expect: str
    check: Callable[[str], bool] | None = None  # for "inert": the compose text is safe
    says: str | None = None  # a refusal's line matches this (it names what was refused)
    before_engine: bool = False  # refused before anything reached the Docker engine
    verify: Callable[[Outcome], bool] | None = None
    program: list[str] | None = None  # run instead of `python -m invoke`
    limits: tuple[float, float] | None = None  # seconds, MiB of memory
    why: str = ""


def _yaml(project: str) -> str:
    path = ROOT / "compose" / f"{project}.yaml"
    return path.read_text() if path.exists() else ""


def cases(tmp: Path) -> list[Case]:
    home = str(Path.home())
    link = tmp / "looks-fine"
    if not link.exists():
        link.symlink_to("/etc")
    bomb = tmp / "bomb"
    (bomb / "models" / "zai-org").mkdir(parents=True, exist_ok=True)
    lol = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join('*' + p for _ in range(9) for p in [prev])}]\n"
        for prev, c in zip("abcdefgh", "bcdefghi", strict=True))
    (bomb / "models" / "zai-org" / "GLM-4.6.yaml").write_text(lol)
    typo = tmp / "typo"
    (typo / "models" / "zai-org").mkdir(parents=True, exist_ok=True)
    (typo / "models" / "zai-org" / "GLM-4.6.yaml").write_text(
        "model: {model_id: zai-org/GLM-4.6, context_length: lots}\nvariants: [1, 2]\n"
        "features: {tool_calling: {args: [--tool-call-parser, glm45]}}\n")
    big = tmp / "big"
    (big / "models" / "zai-org").mkdir(parents=True, exist_ok=True)
    with open(big / "models" / "zai-org" / "GLM-4.6.yaml", "wb") as handle:
        handle.truncate(40 * 1024 * 1024)
    linked = tmp / "linked"
    (linked / "models" / "zai-org").mkdir(parents=True, exist_ok=True)
    target = linked / "models" / "zai-org" / "GLM-4.6.yaml"
    if not target.exists():
        target.symlink_to(Path.home() / ".bashrc")
    evil = tmp / "evil"
    (evil / "models" / "zai-org").mkdir(parents=True, exist_ok=True)
    recipe = (ROOT / "src/glmkit/recipedata/models/zai-org/GLM-4.6.yaml").read_text()
    (evil / "models" / "zai-org" / "GLM-4.6.yaml").write_text(recipe.replace(
        "  base_env: {}", "  base_env: {LD_PRELOAD: /tmp/x.so, HF_ENDPOINT: 'http://evil'}\n"
        "  docker_image: evil.example/pwn:v0.33.0").replace(
        "  - --trust-remote-code", "  - --trust-remote-code\n  - --api-key\n  - stolen"))
    key_file = tmp / "key"
    key_file.write_text("")
    gpu = ["--vendor", "cuda", "--gpu", "h200", "--gpu-count", "8"]
    junk_hw = tmp / "hw.json"
    junk_hw.write_text("{not json")
    render = ["render", "--project", "hostile", "--no-check"]
    # Issue #27's inputs: files the kit did not write, and data that reaches the terminal.
    import yaml

    def synced_variant(name: str, change: dict[str, object]) -> Path:
        folder = tmp / name
        (folder / "models" / "zai-org").mkdir(parents=True, exist_ok=True)
        data = yaml.safe_load(recipe)
        data["variants"][next(iter(data["variants"]))].update(change)
        (folder / "models" / "zai-org" / "GLM-4.6.yaml").write_text(yaml.safe_dump(data))
        return folder

    count = synced_variant("count", {"parameter_count": "1.2.3B"})
    digits = synced_variant("digits", {"parameter_count": int("9" * 311)})
    int4 = synced_variant("int4", {"precision": "int4"})
    flag_id = synced_variant("flagid", {"model_id": "--tokenizer=attacker/GLM-4.6"})
    escape_id = synced_variant("escid", {"model_id": "zai-org/GLM\x1b[2J"})
    fifo = tmp / "fifo.json"
    if not fifo.exists():
        os.mkfifo(fifo)
    hf_fifo = tmp / "hf-fifo"
    snap = hf_fifo / "hub" / "models--zai-org--GLM-4.6" / "snapshots" / "x"
    snap.mkdir(parents=True, exist_ok=True)
    if not (snap / "config.json").exists():
        os.mkfifo(snap / "config.json")
    hf_bad = {}
    for name, body in {"layers0": b'{"num_hidden_layers": 0, "num_attention_heads": 8, '
                                  b'"hidden_size": 64}',
                       "layers-46": b'{"num_hidden_layers": -46, "num_attention_heads": 8, '
                                    b'"hidden_size": 64}',
                       "deep": b"[" * 100_000 + b"]" * 100_000,
                       "xff": b'{"num_hidden_layers": 4, "x": "\xff"}',
                       "digits": b'{"num_hidden_layers": 1' + b"0" * 5000 + b"}",
                       "experts": b'{"num_hidden_layers": 4, "num_attention_heads": 8, '
                                  b'"hidden_size": 64, "n_routed_experts": 8, '
                                  b'"num_experts_per_tok": 8}'}.items():
        folder = tmp / f"hf-{name}"
        snap = folder / "hub" / "models--zai-org--GLM-4.6" / "snapshots" / "x"
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "config.json").write_bytes(body)
        hf_bad[name] = str(folder)
    hw = {}
    for name, body in {"sup2": '{"vendor": "cuda", "driver_version": "\u00b2", "gpus": []}',
                       "1e400": '{"vendor": "cuda", "gpus": [{"index": 0, "name": "H100", '
                                '"memory_mib": 1e400}]}',
                       "deep": '{"vendor": "cuda", "gpus": ' + "[" * 100_000 +
                               "]" * 100_000 + "}",
                       "esc": '{"vendor": "cuda", "gpus": [{"index": 0, "name": '
                              '"\u001b]8;;http://x\u0007H100", "memory_mib": 81559}]}'}.items():
        (tmp / f"hw-{name}.json").write_text(body)
        hw[name] = str(tmp / f"hw-{name}.json")
    results = ROOT / "results"
    hostile_runs = []
    for name, meta, point in [
            ("zz-hostile-link", None, None),
            ("zz-hostile-mathtext", {"model": "zai-org/GLM-4.6", "batches": [1],
                                     "label": "$\\frac{$ bad $x^$"},
             {"output_throughput": 1.0}),
            ("zz-hostile-types", {"model": "zai-org/GLM-4.6", "vendor": "cuda",
                                  "batches": [1], "max_model_len": int("9" * 400),
                                  "workload": {"name": "x", "input_len": "abc"},
                                  "hardware": {"gpus": [{"name": "H200",
                                                         "memory_mib": int("9" * 400)}]}},
             {"max_concurrency": "many", "output_throughput": int("9" * 400)})]:
        folder = results / name
        (folder / "points").mkdir(parents=True, exist_ok=True)
        if meta is None:
            if not (folder / "meta.json").is_symlink():
                (folder / "meta.json").symlink_to("/etc/passwd")
        else:
            (folder / "meta.json").write_text(json.dumps(meta))
            (folder / "points" / "batch-0001.json").write_text(json.dumps(point))
        hostile_runs.append(name)
    cfg = tmp / "image.yaml"
    cfg.write_text("glmkit:\n  image: attacker/backdoored-vllm:1\n")

    def no_secret(text: str) -> bool:
        return SECRET not in text and "${HF_TOKEN}" not in text.replace("$${HF_TOKEN}", "")

    return [
        Case("1 `$` for Compose", "extra arg `${HF_TOKEN}`",
             [*render, "--", "--chat-template-content-format", "${HF_TOKEN}"], {}, "inert",
             no_secret),
        Case("1 `$` for Compose", "`--hf-cache` with `$VLLM_API_KEY`",
             [*render, "--hf-cache", str(tmp / "c$VLLM_API_KEY")], {}, "inert",
             lambda t: "$$VLLM_API_KEY" in t),
        Case("1 `$` for Compose", "model id `org/${VLLM_API_KEY}`",
             [*render, "--model", "org/${VLLM_API_KEY}"], {}, "refused"),
        Case("1 `$` for Compose", "`--ifname eth0${HF_TOKEN}`",
             [*render, "--nodes", "2", "--ifname", "eth0${HF_TOKEN}"], {}, "refused"),
        Case("1 `$` for Compose", "GLMKIT_EXTRA_ARGS `--seed $HF_TOKEN`",
             render, {"GLMKIT_EXTRA_ARGS": "--chat-template-content-format $HF_TOKEN"},
             "inert", no_secret),
        Case("2 words after --", "JSON with spaces as one argument",
             [*render, "--", "--speculative-config",
              '{"method": "ngram", "num_speculative_tokens": 1}'], {}, "inert",
             lambda t: '{"method": "ngram", "num_speculative_tokens": 1}' in t),
        Case("2 words after --", "an apostrophe",
             [*render, "--", "--chat-template-content-format", "it's"], {}, "inert",
             lambda t: "it's" in t),
        Case("2 words after --", "GLMKIT_EXTRA_ARGS with an open quote", render,
             {"GLMKIT_EXTRA_ARGS": "--seed 'open"}, "refused"),
        Case("3 flag spellings", "`--api_key=x`", [*render, "--", "--api_key=x"], {},
             "refused"),
        Case("3 flag spellings", "`--allowed_local_media_path=/`",
             [*render, "--", "--allowed_local_media_path=/"], {}, "refused"),
        Case("3 flag spellings", "prefix `--api-ke x`", [*render, "--", "--api-ke", "x"], {},
             "refused"),
        Case("3 flag spellings", "prefix `--max-model 9`", [*render, "--", "--max-model", "9"],
             {}, "refused"),
        Case("3 flag spellings", "`--model other/repo` (vLLM moves it to the front)",
             [*render, "--", "--model", "other/repo"], {}, "refused"),
        Case("3 flag spellings", "dotted `--kv-transfer-config.kv_connector_module_path`",
             render, {"GLMKIT_EXTRA_ARGS": "--kv-transfer-config.kv_connector_module_path m"},
             "refused"),
        Case("3 flag spellings", "`--config /x.yaml` from GLMKIT_EXTRA_ARGS", render,
             {"GLMKIT_EXTRA_ARGS": "--config /x.yaml"}, "refused"),
        Case("3 flag spellings", "`--uds /tmp/s` (no port at all)",
             [*render, "--", "--uds", "/tmp/s"], {}, "refused"),
        Case("4 recipes", "sync from a folder whose recipe is an alias bomb",
             ["recipes", "sync", "--from", str(bomb)], {}, "refused"),
        Case("4 recipes", "`--middleware` from GLMKIT_EXTRA_ARGS", render,
             {"GLMKIT_EXTRA_ARGS": "--middleware evil.Middleware"}, "refused"),
        Case("4 recipes", "synced recipe: LD_PRELOAD, HF_ENDPOINT, its own image, --api-key",
             ["recipes", "sync", "--from", str(evil)], {}, "inert", lambda t: True),
        Case("4 recipes", "render from that synced recipe",
             [*render, "--model", "zai-org/GLM-4.6", *gpu], {}, "inert",
             lambda t: all(x not in t for x in ("LD_PRELOAD", "HF_ENDPOINT", "evil.example",
                                                 "stolen", "--trust-remote-code"))),
        Case("5 bad synced files", "`context_length: lots`, `variants: [1,2]`",
             ["recipes", "sync", "--from", str(typo)], {}, "refused"),
        Case("5 bad synced files", "a 40 MB recipe file",
             ["recipes", "sync", "--from", str(big)], {}, "refused"),
        Case("6 sync hygiene", "recipe file symlinked to ~/.bashrc",
             ["recipes", "sync", "--from", str(linked)], {}, "refused"),
        Case("6 sync hygiene", "origin `--upload-pack=touch /tmp/x`",
             ["recipes", "sync", "--from", "--upload-pack=touch /tmp/pwned"], {}, "refused"),
        Case("6 sync hygiene", "credentials in the origin URL",
             ["recipes", "sync", "--from", "https://user:tok3n-secret@127.0.0.1:9/r.tar.gz"],
             {}, "refused", None),
        Case("7 host mounts", "`--media-dir /` (vision model)",
             [*render, "--model", "zai-org/GLM-4.6V", *gpu, "--media-dir", "/"], {},
             "refused"),
        Case("9 secrets on command lines", "`up --api-key-file` of an empty file",
             ["up", "--api-key-file", str(key_file)], {}, "refused"),
        Case("9 secrets on command lines", "`config -- --api-key sk-abc`",
             ["config", "--", "--api-key", "sk-abcdef"], {}, "inert",
             lambda t: "sk-abcdef" not in t),
        Case("10 k8s export", "project `my_project`",
             ["export", "k8s", "--project", "my_project"], {}, "refused"),
        Case("10 k8s export", "arg `$(HF_TOKEN)` in the manifest",
             ["export", "k8s", "--project", "hostile", "--model", "zai-org/GLM-4.7", *gpu,
              "--", "--chat-template-content-format",
              "$(HF_TOKEN)"], {}, "inert", lambda t: True),
        Case("11 multi-node", "`--nodes head=ssh://0.0.0.0,w1=ssh://gpu2`",
             [*render, *gpu, "--nodes", "head=ssh://0.0.0.0,w1=ssh://gpu2"], {}, "refused"),
        Case("7 host mounts", "`--hf-cache /`", [*render, "--hf-cache", "/"], {}, "refused"),
        Case("7 host mounts", "`--hf-cache /var/run` (Docker socket)",
             [*render, "--hf-cache", "/var/run"], {}, "refused"),
        Case("7 host mounts", "`HF_HOME=$HOME`", render, {"HF_HOME": home}, "refused"),
        Case("7 host mounts", "`--hf-cache` symlink to /etc", [*render, "--hf-cache", str(link)],
             {}, "refused"),
        Case("7 host mounts", "`--hf-cache ~/.ssh`", [*render, "--hf-cache", "~/.ssh"], {},
             "refused"),
        Case("7 host mounts", "relative `--hf-cache rel`", [*render, "--hf-cache", "rel-cache"],
             {}, "inert", lambda t: f"source: {ROOT}/rel-cache" in t),
        Case("8 markup", "`--vendor '[/x]'`", [*render, "--vendor", "[/x]"], {}, "refused"),
        Case("8 markup", "`GLMKIT_ROUTER_POLICY='[/x]' invoke config`", ["config"],
             {"GLMKIT_ROUTER_POLICY": "[/x]"}, "inert", lambda t: True),
        Case("12 one clear line", "`GLMKIT_HARDWARE` junk file", render,
             {"GLMKIT_HARDWARE": str(junk_hw)}, "refused"),
        Case("12 one clear line", "a 300-character model id",
             [*render, "--model", "org/" + "m" * 296], {}, "refused"),
        Case("12 one clear line", "`doctor --port 99999`", ["doctor", "--port", "99999"], {},
             "refused"),
        Case("12 one clear line", "`doctor --host not-an-ip`",
             ["doctor", "--host", "not-an-ip"], {}, "refused"),
        Case("12 one clear line", "`plan --tp -2`", ["plan", "--tp", "-2"], {}, "refused"),
        Case("12 one clear line", "`--gpu-memory-utilization 5`",
             [*render, "--gpu-memory-utilization", "5"], {}, "refused"),
        Case("12 one clear line", "`report --runs ref:/etc/passwd`",
             ["report", "--runs", "ref:/etc/passwd"], {}, "refused"),
        Case("12 one clear line", "`logs` with nothing running",
             ["logs", "--project", "nothing-here"], {}, "refused"),
        # --- issue #27 -------------------------------------------------------------------
        Case("H1 image", "`GLMKIT_IMAGE=attacker/backdoored-vllm:1 render`", render,
             {"GLMKIT_IMAGE": "attacker/backdoored-vllm:1"}, "refused"),
        Case("H1 image", "`image:` under `glmkit:` in invoke.yaml",
             ["-f", str(cfg), *render], {}, "refused"),
        Case("H1 image", "`GLMKIT_IMAGE=glmkit/vllm-cpu:evil`", render,
             {"GLMKIT_IMAGE": "glmkit/vllm-cpu:evil"}, "refused"),
        Case("H1 image", "`--image attacker/x:1` on the command line",
             [*render, "--image", "attacker/x:1"], {}, "inert",
             lambda t: "image: attacker/x:1" in t),
        Case("H1 image", "`--vllm-version '1;id'`",
             [*render, *gpu, "--vllm-version", "1;id"], {}, "refused"),
        Case("H2 synced numbers", "sync `parameter_count: \"1.2.3B\"`",
             ["recipes", "sync", "--from", str(count)], {}, "refused"),
        Case("H2 synced numbers", "`invoke models` after it", ["models"], {}, "inert",
             lambda t: "zai-org/GLM-4.6" in t),
        Case("H2 synced numbers", "`render` (tiny model) after it", render, {}, "inert",
             lambda t: "image:" in t),
        Case("H2 synced numbers", "`plan` after it", ["plan", "--gpu", "h200"], {}, "inert",
             lambda t: "H200" in t),
        Case("M8 synced numbers", "sync a 311-digit `parameter_count`",
             ["recipes", "sync", "--from", str(digits)], {}, "refused"),
        Case("M8 synced numbers", "sync `precision: int4`",
             ["recipes", "sync", "--from", str(int4)], {}, "refused"),
        Case("M4 synced model id", "sync `model_id: --tokenizer=attacker/GLM-4.6`",
             ["recipes", "sync", "--from", str(flag_id)], {}, "refused"),
        Case("M3 escapes", "sync a model id with ESC [2J",
             ["recipes", "sync", "--from", str(escape_id)], {}, "refused"),
        Case("M1 bounded reader", "FIFO as the HF cache's config.json",
             [*render, "--model", "zai-org/GLM-4.6", *gpu, "--hf-cache", str(hf_fifo)], {},
             "inert", lambda t: "zai-org/GLM-4.6" in t),
        Case("M1 bounded reader", "FIFO as GLMKIT_HARDWARE", render,
             {"GLMKIT_HARDWARE": str(fifo)}, "refused"),
        Case("M1 bounded reader", "/dev/zero as GLMKIT_HARDWARE", render,
             {"GLMKIT_HARDWARE": "/dev/zero"}, "refused"),
        Case("M1 bounded reader", "results/…/meta.json → /etc/passwd",
             ["report", "--runs", hostile_runs[0]], {}, "refused"),
        *[Case("M2 config.json", f"HF cache config.json: {name}",
               ["plan", "--model", "zai-org/GLM-4.6", *gpu], {"HF_HOME": folder}, "inert",
               lambda t: "config.json not used" in t) for name, folder in hf_bad.items()],
        *[Case("M9 GLMKIT_HARDWARE", f"GLMKIT_HARDWARE {name}", render,
               {"GLMKIT_HARDWARE": path}, "refused") for name, path in hw.items()],
        Case("M3 escapes", "`down --project` with OSC 0",
             ["down", "--project", "x\x1b]0;pwned\x07"], {}, "refused"),
        Case("M3 escapes", "`plan --gpu` with ESC [2J",
             ["plan", "--gpu", "h\x1b[2J", "--gpu-mem", "80"], {}, "inert",
             lambda t: "\x1b" not in t),
        Case("M6 mounts", "`--hf-cache /root/cache` (another user's home)",
             [*render, "--hf-cache", "/root/cache"], {"HOME": str(tmp)}, "refused"),
        Case("M7 report", "label read as matplotlib mathtext",
             ["report", "--runs", hostile_runs[1], "--out", str(tmp / "rep1")], {}, "inert",
             lambda t: "Traceback" not in t),
        Case("M7 report", "ints past range, wrong workload types, max_concurrency text",
             ["report", "--runs", hostile_runs[2], "--out", str(tmp / "rep2")], {}, "inert",
             lambda t: "Traceback" not in t),
        Case("M10 JSON flags", "`--speculative-config '{\"method\":'`",
             [*render, "--", "--speculative-config", '{"method":'], {}, "refused"),
        Case("Low project", "`status --project 'A B'`", ["status", "--project", "A B"], {},
             "refused"),
        *issue_35(tmp),
    ]


# --- issue #35: the trust boundary, third round ----------------------------------------------

FP8 = ["--vendor", "cuda", "--gpu", "h200", "--model", "zai-org/GLM-4.7-FP8"]
RENDER = ["render", "--project", "hostile", "--no-check"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a 40-hex commit: pinning is allowed


def _config(tmp: Path, name: str, body: str) -> list[str]:
    """`invoke -f FILE`: an invoke.yaml with `body` under `glmkit:`."""
    path = tmp / f"{name}.yaml"
    path.write_text("glmkit:\n" + body)
    return ["-f", str(path)]


def _run_folder(name: str, meta: dict[str, object], points: dict[int, object] | None = None
                ) -> Path:
    """results/NAME as `invoke bench` leaves one (removed again at the end)."""
    folder = ROOT / "results" / name
    (folder / "points").mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    for batch, point in (points or {}).items():
        body = point if isinstance(point, bytes) else json.dumps(point).encode()
        (folder / "points" / f"batch-{batch:04d}.json").write_bytes(body)
    return folder


RUN_META = {"version": 2, "label": "x", "model": "zai-org/GLM-4.6", "vendor": "cpu",
            "workload": {"name": "custom", "input_len": 32, "output_len": 16},
            "mode": "prompts", "batches": [1], "hardware": {"description": "cpu"}}
# H4: a meta.json point whose `goodput` words are options of `vllm bench serve`.
GOODPUT = ["ttft:1", "--base-url", "http://attacker.example", "--trust-remote-code",
           "--tokenizer", "attacker/evil-tok"]
# What `invoke bench --resume` would run for each missing point (open_run + bench_argv):
# refused with one line, or argv of which no word from the file is an option.
RESUME_ARGV = """
import json, sys
from pathlib import Path
from glmkit.errors import GlmkitError
from glmkit.measure.point import bench_argv
from glmkit.measure.results import open_run
from glmkit.run.server import RunningServer
try:
    run = open_run(Path(sys.argv[1]), sys.argv[2])
except GlmkitError as err:
    sys.exit(str(err).splitlines()[0])
target = RunningServer(container="c", served_model="zai-org/GLM-4.6", model_ref="m",
                       max_model_len=4096, vendor="cpu", image="i", serve_args=(),
                       base_url="http://127.0.0.1:8000")
for point in run.meta.points:
    print(json.dumps(bench_argv(target, run.meta.workload, point, "r.json")))
"""


def _clean_bench_argv(text: str) -> bool:
    """Every argv: no word from the file as an option, `--goodput` only ttft|tpot|e2el:N,
    `--request-rate` a number or inf."""
    argvs = [json.loads(line) for line in text.splitlines() if line.startswith("[")]
    if not argvs:
        return False
    for argv in argvs:
        if any(w in argv for w in ("--trust-remote-code", "http://attacker.example",
                                   "attacker/evil-tok")):
            return False
        # `--request-rate=R` (how bench_argv writes a value) or `--request-rate R`.
        rate = next((w.split("=", 1)[1] for w in argv if w.startswith("--request-rate=")),
                    None) or argv[argv.index("--request-rate") + 1]
        if not re.fullmatch(r"inf|[0-9]+(\.[0-9]+)?", rate):
            return False
        if "--goodput" in argv:
            words = argv[argv.index("--goodput") + 1:]
            words = words[:next((i for i, w in enumerate(words) if w.startswith("--")),
                                len(words))]
            if not all(re.fullmatch(r"(ttft|tpot|e2el):[0-9]+(\.[0-9]+)?", w) for w in words):
                return False
    return True


def _csv_safe(folder: Path) -> Callable[[Outcome], bool]:
    """M5: report.csv with no text cell a spreadsheet reads as a formula, and numbers only
    in the number columns."""
    def verify(outcome: Outcome) -> bool:
        path = folder / "report.csv"
        if outcome.code != 0 or not path.exists():
            return False
        rows = list(csv.reader(path.read_text().splitlines()))
        text_columns = {"run_id", "label", "model", "vendor", "workload"}
        for row in rows[1:]:
            for name, cell in zip(rows[0], row, strict=False):
                if name in text_columns:
                    if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                        return False
                elif cell != "":
                    try:
                        float(cell)
                    except ValueError:
                        return False
        return len(rows) > 1
    return verify


def _no_hidden(outcome: Outcome) -> bool:
    return HIDDEN.search(outcome.out.replace("\n", "").replace("\t", "")) is None


def _short(outcome: Outcome) -> bool:
    return "Z" * 100 not in outcome.out


def issue_35(tmp: Path) -> list[Case]:
    """Every reproduction of issue #35, with the outcome its Build section asks for."""
    out: list[Case] = []

    # -- High 1: code-loading is a combination ---------------------------------------------
    # While the command holds --trust-remote-code (every built-in GLM recipe keeps it), a
    # flag or JSON key naming another repository, config path or draft model comes from
    # the command line only; a revision from invoke.yaml/env only as a 40-hex commit.
    issue = _config(tmp, "h1", '  extra_args: ["--code-revision", "refs/pr/1", '
                                '"--hf-config-path", "attacker/cfg"]\n')
    out += [
        Case("H1 code-loading", "control: the GLM-4.7-FP8 render keeps --trust-remote-code",
             [*RENDER, *FP8], {}, "inert", lambda t: "--trust-remote-code" in t),
        Case("H1 code-loading", "invoke.yaml `--code-revision refs/pr/1 --hf-config-path "
             "attacker/cfg` (the issue's command)", [*issue, *RENDER, *FP8], {}, "refused",
             says="--code-revision|--hf-config-path"),
        Case("H1 code-loading", "the same invoke.yaml, `export k8s`",
             [*issue, "export", "k8s", "--project", "hostile", *FP8], {}, "refused",
             says="--code-revision|--hf-config-path"),
    ]
    flags = [("--tokenizer", "attacker/tok"), ("--hf-config-path", "attacker/cfg"),
             ("--revision", "refs/pr/1"), ("--code-revision", "refs/pr/1"),
             ("--tokenizer-revision", "main"),
             ("--speculative-config", '{"method": "eagle", "model": "attacker/draft", '
                                      '"num_speculative_tokens": 1}'),
             ("--hf-overrides", '{"auto_map": {"AutoConfig": "attacker/x--cfg.Config"}}')]
    for flag, value in flags:
        words = f"{flag} '{value}'"
        out.append(Case("H1 code-loading", f"GLMKIT_EXTRA_ARGS `{flag} {value[:40]}`",
                        [*RENDER, *FP8], {"GLMKIT_EXTRA_ARGS": words}, "refused",
                        says=re.escape(flag)))
    out += [
        Case("H1 code-loading", "GLMKIT_EXTRA_ARGS `--hf-config-path` with --nodes 2",
             [*RENDER, *FP8, "--nodes", "2"],
             {"GLMKIT_EXTRA_ARGS": "--hf-config-path attacker/cfg"}, "refused",
             says="--hf-config-path"),
        Case("H1 code-loading", "GLMKIT_EXTRA_ARGS `--tokenizer` into pd_cluster pools",
             [*RENDER, "--vendor", "cuda", "--gpu", "h200", "--gpu-count", "8", "--model",
              "zai-org/GLM-4.5-Air-FP8", "--strategy", "pd_cluster"],
             {"GLMKIT_EXTRA_ARGS": "--tokenizer attacker/tok"}, "refused",
             says="--tokenizer"),
        Case("H1 code-loading", "GLMKIT_EXTRA_ARGS `--revision` as a 40-hex commit (pinning)",
             [*RENDER, *FP8], {"GLMKIT_EXTRA_ARGS": f"--revision {COMMIT}"}, "inert",
             lambda t: COMMIT in t),
        Case("H1 code-loading", "`-- --tokenizer zai-org/GLM-4.7-FP8` on the command line",
             [*RENDER, *FP8, "--", "--tokenizer", "zai-org/GLM-4.7-FP8"], {}, "inert",
             lambda t: "--tokenizer" in t),
    ]

    # -- High 2: remote engines: ssh:// from any source, tcp:// only with TLS verification
    certs = tmp / "docker-certs"
    certs.mkdir(exist_ok=True)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    tcp = "head=tcp://203.0.113.5:2375,w1=tcp://203.0.113.6:2375"
    out += [
        Case("H2 remote engines", "invoke.yaml `nodes: head=tcp://…,w1=tcp://…` (the "
             "issue's command)", [*_config(tmp, "h2", f"  nodes: {tcp}\n"), *RENDER, *FP8],
             {}, "refused", says="tcp://"),
        Case("H2 remote engines", "GLMKIT_NODES with http:// engines", [*RENDER, *FP8],
             {"GLMKIT_NODES": "head=http://203.0.113.5:2375,w1=http://203.0.113.6:2375"},
             "refused", says="http://"),
        Case("H2 remote engines", "`--nodes head=tcp://…` without TLS verification",
             [*RENDER, *FP8, "--nodes", tcp], {}, "refused", says="tcp://"),
        Case("H2 remote engines", "`--nodes` with a unix:// engine",
             [*RENDER, *FP8, "--nodes", "head=unix:///tmp/x.sock,w1=ssh://gpu2"], {},
             "refused", says="unix://"),
        Case("H2 remote engines", "`--nodes head=tcp://…` with DOCKER_TLS_VERIFY and certs",
             [*RENDER, *FP8, "--nodes", tcp.replace("2375", "2376")],
             {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}, "inert",
             lambda t: True),
        Case("H2 remote engines", "invoke.yaml `nodes:` over ssh://",
             [*_config(tmp, "h2ssh", "  nodes: head=ssh://gpu1,w1=ssh://gpu2\n"), *RENDER,
              *FP8], {}, "inert", lambda t: True),
        Case("H2 remote engines", "`up` names the engines a secret goes to before it leaves",
             [], {}, "untried", why="needs reachable remote engines"),
    ]

    # -- High 3: `invoke tune --resume` trusted results/tune/ID/tune.json ------------------
    tune = ROOT / "results" / "tune" / "zz-hostile-tune"
    tune.mkdir(parents=True, exist_ok=True)
    (tune / "tune.json").write_text(json.dumps({
        "settings": {"project": "glmkit", "vendor": "rocm", "gpu": "mi300x", "gpu_count": 8,
                     "model": "zai-org/GLM-4.7-FP8", "image": "attacker/backdoored-vllm:1",
                     "privileged": True,
                     "extra_args": ["--trust-remote-code", "--tokenizer", "attacker/tok"]},
        "workload": "balanced", "batch": "16", "input_len": None, "output_len": None,
        "slo": [], "rows": []}))
    out.append(Case("H3 tune state", "`tune --resume` of a tune.json naming an image, "
                    "privileged and code-loading flags", ["tune", "--resume", tune.name], {},
                    "refused", before_engine=True,
                    verify=lambda o: not o.names_project("glmkit")))

    # -- High 4: `bench --resume` put meta.json's goodput words on vllm bench serve's argv
    _run_folder("zz-hostile-goodput", {**RUN_META, "points": [
        {"batch": 1, "num_prompts": 1, "max_concurrency": None,
         "request_rate": "inf --base-url http://attacker.example", "goodput": GOODPUT}]})
    out.append(Case("H4 run metadata", "meta.json `goodput: [\"ttft:1\", \"--base-url\", …, "
                    "\"--trust-remote-code\", \"--tokenizer\", …]`, free `request_rate`: what "
                    "`bench --resume` would run", [], {}, "either",
                    check=_clean_bench_argv,
                    program=[sys.executable, "-c", RESUME_ARGV, str(ROOT / "results"),
                             "zz-hostile-goodput"]))

    # -- Medium 5: report.csv cells a spreadsheet runs ------------------------------------
    _run_folder("zz-hostile-csv", {
        **RUN_META, "label": '=HYPERLINK("http://attacker.example","x")',
        "model": "@SUM(1+1)*cmd|' /C calc'!A0", "vendor": "+cmd",
        "workload": {"name": "-2+3+cmd|' /C calc'!A0", "input_len": 32, "output_len": 16}},
        {1: {"completed": 1, "output_throughput": "=1+1", "mean_ttft_ms": "\t=2",
             "request_throughput": 1.5}})
    out.append(Case("M5 report.csv", "label `=HYPERLINK(…)`, model `@SUM(…)`, vendor `+cmd`, "
                    "workload `-2+3+cmd|…`, text in number columns",
                    ["report", "--runs", "zz-hostile-csv", "--out", str(tmp / "rep5")], {},
                    "untouched", verify=_csv_safe(tmp / "rep5")))

    # -- Medium 6: report within memory and time --------------------------------------------
    # 16 MiB of small objects: 850 MB of memory and 5 s for one report before #35.
    big_point = b'{"completed": 1, "output_throughput": 1.0, "x": [' + \
        b",".join([b"{}"] * (16 * 2**20 // 3)) + b"]}"
    _run_folder("zz-hostile-bigpoint", RUN_META, {1: big_point})
    _run_folder("zz-hostile-batches", {**RUN_META, "batches": list(range(1, 200_001))},
                {1: {"completed": 1, "output_throughput": 1.0}})
    for n in range(10):
        _run_folder(f"zz-hostile-big-{n}", {**RUN_META, "batches": list(range(1, 200_001))},
                    {1: big_point})
    out += [
        Case("M6 report bounds", "one run with a 16 MiB point file",
             ["report", "--runs", "zz-hostile-bigpoint", "--out", str(tmp / "rep6a")], {},
             "bounded", limits=(30, 500)),
        Case("M6 report bounds", "one run whose 1.5 MB meta.json lists 200,000 batches",
             ["report", "--runs", "zz-hostile-batches", "--out", str(tmp / "rep6c")], {},
             "bounded", limits=(30, 500)),
        Case("M6 report bounds", "ten runs, each a 16 MiB point file and a meta.json of "
             "200,000 batches", ["report", *[a for n in range(10) for a in (
                 "--runs", f"zz-hostile-big-{n}")], "--out", str(tmp / "rep6b")], {},
             "bounded", limits=(30, 500)),
    ]

    # -- Medium 7: mounts by ownership ------------------------------------------------------
    others = tmp / "others"
    others.mkdir(exist_ok=True)
    mine = tmp / "mine"
    mine.mkdir(exist_ok=True)
    root = os.geteuid() == 0
    if root:
        os.chown(others, 65534, 65534)
        others.chmod(0o700)
    out += [
        Case("M7 mounts", "`HF_HOME=/var/lib/dpkg`", RENDER, {"HF_HOME": "/var/lib/dpkg"},
             "refused", says="/var/lib/dpkg"),
        Case("M7 mounts", "invoke.yaml `hf_cache: /var/backups`",
             [*_config(tmp, "m7a", "  hf_cache: /var/backups\n"), *RENDER], {}, "refused",
             says="/var/backups"),
        Case("M7 mounts", "invoke.yaml `hf_cache: /opt`",
             [*_config(tmp, "m7b", "  hf_cache: /opt\n"), *RENDER], {}, "refused",
             says="/opt"),
        Case("M7 mounts", "invoke.yaml `hf_cache: /srv`",
             [*_config(tmp, "m7c", "  hf_cache: /srv\n"), *RENDER], {}, "refused",
             says="/srv"),
        Case("M7 mounts", "`--hf-cache /var/lib/dpkg` on the command line"
             + (" (as root: rendered, with a note)" if root else " (not the user's)"),
             [*RENDER, "--hf-cache", "/var/lib/dpkg"], {}, "inert" if root else "refused",
             (lambda t: "/var/lib/dpkg" in t) if root else None,
             verify=(lambda o: re.search(r"(?im)^(note|warning)\b.*/var/lib/dpkg", o.out)
                     is not None) if root else None),
        Case("M7 mounts", "control: `--hf-cache` a folder the user owns",
             [*RENDER, "--hf-cache", str(mine)], {}, "inert", lambda t: str(mine) in t),
    ]
    if root:  # ownership proves nothing: the system prefixes from the command line only
        out += [
            Case("M7 mounts", "invoke.yaml `media_dir: /srv` (vision model), as root",
                 [*_config(tmp, "m7d", "  media_dir: /srv\n"), *RENDER, "--model",
                  "zai-org/GLM-4.6V", "--vendor", "cuda", "--gpu", "h200", "--gpu-count",
                  "8"], {}, "refused", says="/srv"),
            Case("M7 mounts", "invoke.yaml `hf_cache:` another user's 0700 folder",
                 [*_config(tmp, "m7e", f"  hf_cache: {others}\n"), *RENDER], {}, "refused",
                 says=re.escape(str(others))),
            Case("M7 mounts", "`--hf-cache` another user's 0700 folder",
                 [*RENDER, "--hf-cache", str(others)], {}, "refused",
                 says=re.escape(str(others))),
        ]
    else:
        out.append(Case("M7 mounts", "another user's 0700 folder", [], {}, "untried",
                        why="making another user's folder needs root"))

    # -- Medium 8 and 9: tune-moe, and tune beside the user's server ---------------------------
    out += [
        Case("M8 tune-moe", "baseline = vLLM's shipped config; tuner stopped with its "
             "command; TEP/DEP/Ray shapes", [], {}, "untried",
             why="needs a serving GPU container (the unit tests fake docker exec and the "
                 "shipped-config list)"),
        Case("M9 tune project", "`tune` under the default project: the user's `glmkit` "
             "server is never named", ["tune", "--vendor", "cpu", "--candidates", "1",
                                       "--batch", "1"], {}, "untouched",
             verify=lambda o: not o.names_project("glmkit")),
    ]

    # -- Low ---------------------------------------------------------------------------------
    component = str(tmp / ("a" * 300))  # longer than a file-name component
    for what, argv, env in [
            ("`report --runs` path", ["report", "--runs", component], {}),
            ("`--hf-cache`", [*RENDER, "--hf-cache", component], {}),
            ("`--media-dir`", [*RENDER, "--model", "zai-org/GLM-4.6V", "--vendor", "cuda",
                               "--gpu", "h200", "--gpu-count", "8", "--media-dir",
                               component], {}),
            ("`HF_HOME`", RENDER, {"HF_HOME": component}),
            ("`bench-data --out`", ["bench-data", "--out", f"{component}/x.parquet"], {}),
            ("`recipes sync --from`", ["recipes", "sync", "--from", component], {})]:
        out.append(Case("L path too long", f"{what} with a 300-character name", argv, env,
                        "refused"))
    for what, argv, env in [
            ("`--port`", [*RENDER, "--port", LONG], {}),
            ("`--dp`", [*RENDER, "--dp", LONG], {}),
            ("invoke.yaml `port:`", [*_config(tmp, "llong", f"  port: {LONG}\n"), *RENDER],
             {}),
            ("`GLMKIT_PORT`", RENDER, {"GLMKIT_PORT": LONG}),
            ("`GLMKIT_MAX_MODEL_LEN`", RENDER, {"GLMKIT_MAX_MODEL_LEN": LONG}),
            ("`--gpus`", [*RENDER, "--gpus", LONG], {}),
            ("`--host`", [*RENDER, "--host", LONG], {}),
            *[(f"bench `--{o}`", ["bench", f"--{o}", LONG], {})
              for o in ("label", "workload", "mode", "batch", "request-rate", "resume")],
            ("tune `--slo`", ["tune", "--slo", LONG], {}),
            ("tune `--resume`", ["tune", "--resume", LONG], {}),
            ("plan `--goal`", ["plan", "--goal", LONG], {}),
            ("`recipes ACTION`", ["recipes", LONG], {}),
            ("`export TARGET`", ["export", LONG], {}),
            ("`login --token-file`", ["login", "--token-file", LONG], {}),
            ("`report --out`", ["report", "--out", LONG], {})]:
        out.append(Case("L echoed whole", f"{what} of 5,000 characters", argv, env,
                        "refused", verify=_short))
    hw_dir = tmp / "l-hw"
    hw_dir.mkdir(exist_ok=True)
    hw_files = {}
    for name, char in (("ESC", "\x1b"), ("DEL", "\x7f"), ("RLO", "\u202e")):
        path = hw_dir / f"{name}.json"
        path.write_text(json.dumps({"vendor": "cuda", "gpus": [
            {"index": 0, "name": f"NVIDIA H100{char}", "memory_mib": 81559}]}))
        hw_files[name] = str(path)
    pd = ["--strategy", "pd_cluster", "--vendor", "cpu"]
    out += [
        Case("L other digits", "`--port ٨٠٠٠` (Arabic-Indic digits)",
             [*RENDER, "--port", "٨٠٠٠"], {}, "refused"),
        Case("L other digits", "`GLMKIT_PORT=٨٠٠٠`", RENDER, {"GLMKIT_PORT": "٨٠٠٠"},
             "refused"),
        Case("L hidden characters", "`plan --gpu` with U+202E", ["plan", "--gpu",
             "H\u202e200", "--gpu-mem", "80"], {}, "either", verify=_no_hidden),
        Case("L hidden characters", "`plan --gpu` with U+2066 and U+200B", ["plan", "--gpu",
             "H2\u2066\u200b00", "--gpu-mem", "80"], {}, "either", verify=_no_hidden),
        # One control character at the end passed the GPU-name pattern (its `\S`).
        *[Case("L hidden characters", f"GLMKIT_HARDWARE GPU name ending in {name}",
               ["plan"], {"GLMKIT_HARDWARE": path}, "refused", says="GLMKIT_HARDWARE")
          for name, path in hw_files.items() if name != "RLO"],
        Case("L hidden characters", "GLMKIT_HARDWARE GPU name with U+202E", ["plan"],
             {"GLMKIT_HARDWARE": hw_files["RLO"]}, "either", verify=_no_hidden),
        Case("L owned flags", "`--nodes 2 -- --distributed-executor-backend ray`",
             [*RENDER, *FP8, "--nodes", "2", "--", "--distributed-executor-backend", "ray"],
             {}, "refused", says="--distributed-executor-backend"),
        Case("L owned flags", "pd_cluster `-- --pipeline-parallel-size 2`",
             [*RENDER, *pd, "--", "--pipeline-parallel-size", "2"], {}, "refused",
             says="--pipeline-parallel-size"),
        Case("L owned flags", "`--mtp -- --speculative-config '{…}'`: one form, not both",
             [*RENDER, *FP8, "--mtp", "--", "--speculative-config",
              '{"method": "mtp", "num_speculative_tokens": 2}'], {}, "either",
             lambda t: not (re.search(r"- --speculative-config\.", t)
                            and re.search(r"- --speculative-config(=|\n)", t))),
        Case("L nodes", "`--nodes head=ssh://gpu.localhost,…` (loopback)",
             [*RENDER, *FP8, "--nodes", "head=ssh://gpu.localhost,w1=ssh://gpu2"], {},
             "refused", says="localhost"),
        Case("L nodes", "`--nodes head=ssh://gpu2,w1=ssh://gpu2` (one host twice)",
             [*RENDER, *FP8, "--nodes", "head=ssh://gpu2,w1=ssh://gpu2"], {}, "refused",
             says="gpu2"),
        Case("L nodes", "`config --nodes head=ssh://u:secret@gpu1,…`",
             ["config", "--nodes", "head=ssh://u:s3cr3t-pass@gpu1,w1=ssh://gpu2"], {},
             "either", verify=lambda o: "s3cr3t-pass" not in o.out),
        Case("L plan", "`plan --gpu gh200` is not an H200",
             ["plan", "--gpu", "gh200"], {}, "either",
             verify=lambda o: re.search(r"(?<![Gg])H200", o.out) is None),
        Case("L plan", "`plan --nodes 200` for a 92-layer model: no PP 200",
             ["plan", "--model", "zai-org/GLM-4.6", "--gpu", "h200", "--nodes", "200"], {},
             "either", verify=lambda o: re.search(
                 r"(\bPP|pipeline[- ]parallel\S*)\s*[=:]?\s*200\b", o.out) is None),
        Case("L plan", "`plan --gpu-count 1048576`: no `1.47849e+08 GB`",
             ["plan", "--gpu", "h200", "--gpu-count", "1048576"], {}, "either",
             verify=lambda o: re.search(r"\de[+-]\d", o.out) is None),
        Case("L plan", "`--mtp --mtp-tokens 1048576`",
             [*RENDER, *FP8, "--mtp", "--mtp-tokens", "1048576"], {}, "refused",
             says="--mtp-tokens|1048576"),
        Case("L router key", "pd_cluster router's OPENAI_API_KEY from VLLM_API_KEY",
             [*RENDER, *pd], {"OPENAI_API_KEY": "sk-users-own"}, "inert",
             lambda t: "OPENAI_API_KEY=${VLLM_API_KEY:-}" in t
             and "- OPENAI_API_KEY\n" not in t),
        Case("L compile cache", "the compile-cache volume is the project's own", RENDER, {},
             "inert", lambda t: bool(re.search(r"\n {2}\S*hostile\S*:\n {4}name: \S*hostile", t))
             and "glmkit-vllm-cache-" not in t),
        Case("L compile cache", "an integration test's `down -v` removes the user's cache",
             [], {}, "untried", why="tests/integration/test_policy_engine.py::"
             "test_the_clean_up_removes_its_own_volumes_only (Docker)"),
        Case("L test runs", "two test runs on one engine take each other's servers down",
             [], {}, "untried", why="tests/unit/test_e2e_servers.py::"
             "test_two_runs_on_one_engine_share_no_project_and_no_port"),
        Case("L router gate", "the keyless gate reads 512 MiB bodies into memory", [], {},
             "untried", why="the router image; in-process: tests/unit/test_router_gate.py"),
    ]
    # The tuner's result line is data from inside the container: one without `speedup`
    # is no result (one line), never a KeyError in print_tune_moe.
    view = ("import json, sys\nfrom glmkit.errors import GlmkitError\n"
            "from glmkit.measure.moe_tune import tuner_summary\n"
            "line = json.dumps({'file': 'E=64,N=1536.json', 'candidates_tried': 3, "
            "'batch_sizes': {'16': {'time_us': 1.0}}})\n"
            "try:\n    tuner_summary(line)\nexcept GlmkitError as err:\n"
            "    sys.exit(str(err))\nprint('read as a result')\n")
    out.append(Case("L tune-moe view", "`print_tune_moe` of a summary without `speedup`", [],
                    {}, "refused", says="no result", program=[sys.executable, "-c", view]))
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    linked = _run_folder("zz-hostile-pointslink", RUN_META)
    (linked / "points").rmdir()
    (linked / "points").symlink_to(elsewhere)
    save = ("import sys\nfrom pathlib import Path\nfrom glmkit.errors import GlmkitError\n"
            "from glmkit.measure.results import open_run\n"
            "try:\n    open_run(Path(sys.argv[1]), sys.argv[2]).save_point(1, {'x': 1})\n"
            "except GlmkitError as err:\n    sys.exit(str(err).splitlines()[0])\n")
    out.append(Case("L points link", "a run's `points/` linked elsewhere: written through?",
                    [], {}, "either", program=[sys.executable, "-c", save,
                                               str(ROOT / "results"), linked.name],
                    verify=lambda o: not any(elsewhere.iterdir())))
    truth = tmp / "truth-run"
    (truth / "points").mkdir(parents=True, exist_ok=True)
    (truth / "meta.json").write_text(json.dumps({
        "model": "zai-org/GLM-4.6", "workload": {"name": "x"},
        "hardware": {"description": "cpu"},
        "provenance": {"gpu": "H200", "driver": "1", "vllm": "0", "date": "d",
                       "weights": "dummy", "routing": "uniform", "tuned_moe": False}}))
    (truth / "points" / "batch-0001.json").write_text('{"median_tpot_ms": 1.0}')
    (tmp / "ref").mkdir(exist_ok=True)
    gpu_truth = [sys.executable, str(ROOT / "scripts" / "gpu_truth.py")]
    out += [
        Case("L gpu_truth", "`reference --name ../x` writes outside --out", [], {},
             "refused", says="--name|\\.\\./x",
             program=[*gpu_truth, "reference", str(truth), "--name", "../x", "--out",
                      str(tmp / "ref")],
             verify=lambda o: not (tmp / "x-c1.txt").exists()),
        Case("L gpu_truth", "`run --tag ../../x` writes outside --results", [], {},
             "refused", says="--tag|\\.\\./\\.\\./x",
             program=[*gpu_truth, "run", str(tmp / "no-layout"), "--results",
                      str(tmp / "truth-results"), "--tag", "../../x"]),
        Case("L bench-data", "`bench-data --out 'a:b'`", ["bench-data", "--out", "a:b"], {},
             "refused", says="a:b|--out"),
    ]
    # A kit home of their own: the recipes synced by the cases above do not apply.
    for case in out:
        case.env = {"GLMKIT_HOME": str(tmp / "kit35"), **case.env}
    return out


# What the stand-in engine answers: enough for a client to ask its first questions (which
# containers of which project), an empty engine, and 503 for anything that would act.
_ANSWERS = {"/_ping": "OK", "/version": json.dumps({
    "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.0", "Os": "linux",
    "Arch": "amd64"}), "/containers/json": "[]", "/images/json": "[]", "/networks": "[]",
    "/volumes": '{"Volumes": [], "Warnings": []}'}


class Engine:
    """A Docker engine that is not there: a socket that records each request and answers
    as an empty engine that can do nothing, and a `docker` that records its arguments
    before the real CLI runs against that socket."""

    def __init__(self, tmp: Path, real_path: str) -> None:
        self.socket_path = tmp / "engine.sock"
        self.log = tmp / "docker-calls.jsonl"
        self.requests: list[str] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        self._server.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        real = shutil.which("docker", path=real_path)
        # The real CLI, but only towards this socket: a call meant for a remote node
        # (DOCKER_HOST=ssh://…) goes nowhere.
        (self.bin / "docker").write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys\n"
            f"with open({str(self.log)!r}, 'a') as log:\n"
            "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
            f"real, here = {real!r}, {f'unix://{self.socket_path}'!r}\n"
            "if real and os.environ.get('DOCKER_HOST') == here:\n"
            "    os.execv(real, [real, *sys.argv[1:]])\n"
            "sys.exit('Cannot connect to the Docker daemon (hostile_inputs.py: no engine)')\n")
        (self.bin / "docker").chmod(0o755)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
            except OSError:
                return
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            self.requests.append(urllib.parse.unquote(line))
            parts = line.split()
            path = urllib.parse.urlsplit(parts[1]).path if len(parts) > 1 else ""
            body = next((v for k, v in _ANSWERS.items() if path.endswith(k)), None)
            status = "200 OK" if body is not None else "503 Service Unavailable"
            body = body if body is not None else '{"message": "hostile_inputs.py: no engine"}'
            kind = "text/plain" if body == "OK" else "application/json"
            with contextlib.suppress(OSError):
                conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nApi-Version: "
                             f"1.41\r\nContent-Length: {len(body)}\r\nConnection: close"
                             f"\r\n\r\n{body}".encode())

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "DOCKER_HOST": f"unix://{self.socket_path}",
                "PATH": f"{self.bin}{os.pathsep}{base.get('PATH', os.defpath)}"}

    def reset(self) -> None:
        self.requests = []
        self.log.unlink(missing_ok=True)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


class Checkout:
    """compose/ and results/ of the checkout as they were: what a case writes there (the
    user's compose file, a tune's or a report's folder) is put back afterwards."""

    FOLDERS = ("results", "results/tune", "results/reports", "results/checks")

    def __init__(self) -> None:
        self.compose = {p: p.read_bytes() for p in (ROOT / "compose").glob("*.yaml")}
        self.entries = {f: self._names(f) for f in self.FOLDERS}

    @staticmethod
    def _names(folder: str) -> set[str]:
        path = ROOT / folder
        return {p.name for p in path.iterdir()} if path.is_dir() else set()

    def changed(self) -> list[str]:
        return sorted(p.name for p in (ROOT / "compose").glob("*.yaml")
                      if self.compose.get(p) != p.read_bytes())

    def restore(self) -> None:
        for path in (ROOT / "compose").glob("*.yaml"):
            if path not in self.compose:
                path.unlink()
        for path, data in self.compose.items():
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
        for folder, names in self.entries.items():
            for name in self._names(folder) - names:
                target = ROOT / folder / name
                if folder == "results" and name in ("tune", "reports", "checks"):
                    continue  # their new entries go below; the folder may be new itself
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)


# Starts the measured program and reports its peak memory. Linux counts the memory of the
# process a program was started from in the program's own peak (exec records the old
# address space's high-water mark), and this script holds hundreds of MiB by the time it
# measures: the program is started from this small process instead.
_PEAK = """import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _measured(argv: list[str], env: dict[str, str], timeout: float
              ) -> tuple[int, str, str, float, float]:
    """Exit code, stdout, stderr, seconds and peak memory (MiB) of one program."""
    read, write = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _PEAK, str(write), *argv], cwd=ROOT,
                                env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                pass_fds=(write,), start_new_session=True)
        os.close(write)
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        peak_kib = float(os.read(read, 64) or 0)
        os.close(read)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode < 0:
        stderr += f"\n(killed after {seconds:.0f} s)"
    return proc.returncode, stdout, stderr, seconds, peak_kib / 1024


def _line(outcome: Outcome) -> str:
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()] or \
        [ln for ln in outcome.stdout.splitlines() if ln.strip()] or ["(no output)"]
    return lines[-1]


def _refused(case: Case, outcome: Outcome) -> bool:
    out = outcome.out
    return outcome.code > 0 and "Traceback" not in out and SECRET not in out \
        and "tok3n-secret" not in out \
        and (case.says is None or re.search(case.says, _line(outcome)) is not None) \
        and (not case.before_engine or not outcome.reached_engine)


def _inert(case: Case, outcome: Outcome) -> bool:
    return outcome.code == 0 and "Traceback" not in outcome.out \
        and SECRET not in outcome.text + outcome.out \
        and (case.check is None or case.check(outcome.text))


def run(case: Case, env: dict[str, str], engine: Engine) -> tuple[Outcome, str, bool]:
    """The case's outcome, the line shown for it, and whether the intended one holds."""
    engine.reset()
    checkout = Checkout()
    argv = case.program or [sys.executable, "-m", "invoke", *case.argv]
    seconds, memory = case.limits or (300, 0)
    try:
        code, stdout, stderr, took, rss = _measured(
            argv, engine.env({**env, **case.env}), seconds * 2 if case.limits else seconds)
        outcome = Outcome(code, stdout, stderr, docker_calls=engine.calls(),
                          engine_requests=list(engine.requests), changed=checkout.changed(),
                          seconds=took, rss_mib=rss)
        outcome.text = _yaml("hostile") if "render" in case.argv else outcome.out
        if case.argv[:2] == ["export", "k8s"]:
            path = ROOT / "compose" / "hostile.k8s.yaml"
            outcome.text = path.read_text() if path.exists() else ""
    finally:
        checkout.restore()
    verified = case.verify is None or case.verify(outcome)
    if case.expect == "refused":
        ok = _refused(case, outcome) and verified
    elif case.expect == "inert":
        ok = _inert(case, outcome) and verified
    elif case.expect == "either":
        ok = (_refused(case, outcome) or _inert(case, outcome)) and verified
    elif case.expect == "bounded":
        ok = "Traceback" not in outcome.out and (outcome.code == 0 or _refused(
            case, outcome)) and outcome.seconds <= seconds and outcome.rss_mib <= memory
    else:  # "untouched"
        ok = "Traceback" not in outcome.out and verified
    if case.argv[:2] == ["export", "k8s"] and case.expect == "inert":
        ok = ok and "$$(HF_TOKEN)" in outcome.text
        shown = "written `$$(HF_TOKEN)`: Kubernetes passes `$(HF_TOKEN)` as text"
    elif case.expect == "bounded":
        shown = f"{outcome.seconds:.1f} s, {outcome.rss_mib:.0f} MiB: {_line(outcome)}"
    elif ok and case.expect == "inert" and "render" in case.argv:
        shown = "rendered; the value stays inert"
    elif ok and case.expect == "inert":
        shown = next((ln.strip() for ln in outcome.stdout.splitlines()
                      if ln.strip().strip("┏┓┳━┃│╇┡┩└┘┴─ ")), "(no output)")
    else:
        shown = _line(outcome)
    if outcome.reached_engine:
        shown = f"(reached the engine) {shown}"
    return outcome, HIDDEN.sub("?", shown)[:150], ok


def main(argv: list[str]) -> int:
    only = argv[argv.index("-k") + 1] if "-k" in argv[:-1] else None
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "hf").mkdir()
        env = {**os.environ, "GLMKIT_HOME": str(tmp / "kit"), "HF_HOME": str(tmp / "hf"),
               "HF_TOKEN": SECRET, "VLLM_API_KEY": SECRET, "HF_HUB_OFFLINE": "1",
               "PIP_NO_INDEX": "1",  # an image build's wheelhouse is not filled from PyPI
               "GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                           os.environ.get("PYTHONPATH")]))}
        for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT",
                     "GLMKIT_NODES", "GLMKIT_EXTRA_ARGS"):
            env.pop(name, None)
        engine = Engine(tmp, env.get("PATH", os.defpath))
        tune_folder = ROOT / "results" / "tune"
        had_tune_folder = tune_folder.exists()
        results = []
        try:
            for case in cases(tmp):
                if only and only not in f"{case.category} {case.what}":
                    continue
                if case.expect == "untried":
                    results.append((case, None, f"not tried here: {case.why}", None))
                    continue
                outcome, line, ok = run(case, env, engine)
                results.append((case, outcome.code, line, ok))
        finally:
            for path in (ROOT / "results").glob("zz-hostile-*"):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
            for path in tune_folder.glob("zz-hostile-*"):
                shutil.rmtree(path, ignore_errors=True)
            if not had_tune_folder:
                with contextlib.suppress(OSError):
                    tune_folder.rmdir()
    status = {True: "holds", False: "fails", None: "not tried"}
    if "--markdown" in argv:
        print("| defect | input | exit | what it got | outcome |")
        print("| --- | --- | --- | --- | --- |")
        for case, code, line, ok in results:
            cell = line.replace("|", "\\|")
            print(f"| {case.category} | {case.what} | {'' if code is None else code} | "
                  f"{cell} | {status[ok]} |")
    else:
        print(json.dumps([{"category": c.category, "input": c.what, "exit": code,
                           "line": line, "outcome": status[ok]}
                          for c, code, line, ok in results], indent=1, ensure_ascii=True))
    bad = [c.what for c, _, _, ok in results if ok is False]
    tried = [r for r in results if r[3] is not None]
    print(f"{len(tried) - len(bad)} of {len(tried)} hold"
          + (f"; {len(results) - len(tried)} not tried here" if len(tried) < len(results)
             else "")
          + (f"; fail: {', '.join(bad)}" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
