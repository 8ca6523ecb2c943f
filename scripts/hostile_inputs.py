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
    return done.returncode, "rendered; the value stays inert" if ok else lines[-1][:150], ok


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
