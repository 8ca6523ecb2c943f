"""Try hostile inputs on the real command line and print what each got, as a table.

Each case runs `invoke ...` as a user would (from the checkout, its own GLMKIT_HOME and
HF cache, a secret in the environment) and records the exit code, the first line of the
error (or the rendered fact that matters) and whether the outcome is the intended one: a
refusal with one line and no traceback, or a render in which the input stays inert.

    python scripts/hostile_inputs.py [--markdown]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_HOSTILE_SECRET_42"


@dataclass
class Case:
    category: str
    what: str
    argv: list[str]
    env: dict[str, str]
    expect: str  # "refused" or "inert"
    check: Callable[[str], bool] | None = None  # for "inert": the compose text is safe


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
    ]


def run(case: Case, env: dict[str, str]) -> tuple[int, str, bool]:
    done = subprocess.run([sys.executable, "-m", "invoke", *case.argv], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, env={**env, **case.env},
                          check=False)
    out = done.stderr + done.stdout
    traceback = "Traceback" in out
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()] or \
        [ln for ln in done.stdout.splitlines() if ln.strip()] or ["(no output)"]
    if case.expect == "refused":
        ok = done.returncode != 0 and not traceback and SECRET not in out \
            and "tok3n-secret" not in out
        return done.returncode, lines[-1][:150], ok
    text = _yaml("hostile") if case.argv[0] == "render" else out
    if case.argv[:2] == ["export", "k8s"]:
        path = ROOT / "compose" / "hostile.k8s.yaml"
        text = path.read_text() if path.exists() else ""
        ok = done.returncode == 0 and "$$(HF_TOKEN)" in text and SECRET not in text
        path.unlink(missing_ok=True)
        return done.returncode, "written `$$(HF_TOKEN)`: Kubernetes passes `$(HF_TOKEN)` as text" \
            if ok else lines[-1][:150], ok
    ok = done.returncode == 0 and not traceback and SECRET not in text and \
        (case.check is None or case.check(text))
    shown = "rendered; the value stays inert" if case.argv[0] == "render" else \
        next((ln.strip() for ln in done.stdout.splitlines() if ln.strip().strip("┏┓┳━┃│╇┡┩└┘┴─ ")),
             "(no output)")
    return done.returncode, shown[:150] if ok else lines[-1][:150], ok


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "hf").mkdir()
        env = {**os.environ, "GLMKIT_HOME": str(tmp / "kit"), "HF_HOME": str(tmp / "hf"),
               "HF_TOKEN": SECRET, "VLLM_API_KEY": SECRET, "HF_HUB_OFFLINE": "1",
               "GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json")}
        results = []
        for case in cases(tmp):
            (ROOT / "compose" / "hostile.yaml").unlink(missing_ok=True)
            code, line, ok = run(case, env)
            results.append((case, code, line, ok))
        (ROOT / "compose" / "hostile.yaml").unlink(missing_ok=True)
        for name in ("zz-hostile-link", "zz-hostile-mathtext", "zz-hostile-types"):
            shutil.rmtree(ROOT / "results" / name, ignore_errors=True)
    if "--markdown" in argv:
        print("| defect | input | exit | what it got | as intended |")
        print("| --- | --- | --- | --- | --- |")
        for case, code, line, ok in results:
            cell = line.replace("|", "\\|")
            print(f"| {case.category} | {case.what} | {code} | {cell} | {'yes' if ok else 'NO'} |")
    else:
        print(json.dumps([{"category": c.category, "input": c.what, "exit": code,
                           "line": line, "ok": ok} for c, code, line, ok in results], indent=1))
    bad = [c.what for c, _, _, ok in results if not ok]
    print(f"{len(results) - len(bad)} of {len(results)} as intended"
          + (f"; not: {', '.join(bad)}" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
