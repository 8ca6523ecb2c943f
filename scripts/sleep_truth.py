"""Sleep truth: a model group's switch on a real GPU, without Docker. The kit's own door
(src/glmkit/run/group_door.py) in front of two `vllm serve` processes of one prepared
layout (`gpu_truth.py prepare`: glmkit's rendered argv, the published config.json, random
weights with `--load-format dummy`), each with --enable-sleep-mode and
VLLM_SERVER_DEV_MODE=1, under names of their own (A and B), at the
--gpu-memory-utilization the group's plan gives one awake and one asleep on this card.
Then a client alternates between them through the door and the run records each switch:
its time (the door's drain, sleep and wake phases, and the client's wait for its first
token), GPU memory before and after (nvidia-smi, in total and per server), and the first
token after the wake.

    # where glmkit is installed (as for gpu_truth.py):
    python scripts/gpu_truth.py prepare --model zai-org/GLM-4.7-Flash \
        --gpu "NVIDIA H100 80GB HBM3" --gpu-mem-mib 81559 --out layouts/flash-h100
    # on the GPU host (vLLM importable, e.g. from wheels on PYTHONPATH):
    python3 scripts/sleep_truth.py layouts/flash-h100 --out results/sleep-truth.json

One command, bounded by --deadline (default 500 s; the servers start one after the other,
the second once the door has put the first to sleep, as `invoke up` does); the JSON is
rewritten after every step, so a run cut short keeps what it measured. Every process it
starts runs in a process group of its own and is killed at the end, whatever happens.
What it imports beyond the standard library: vLLM (and its torch, transformers,
tokenizers) for the servers, aiohttp and prometheus_client for the door (both vLLM's
own), glmkit's sleep_model for the plan's utilization and expected switch time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # glmkit's sleep model, also on a GPU host without it
sys.path.insert(0, str(ROOT / "scripts"))  # gpu_truth's layout, launcher and tokenizer
DOOR = ROOT / "src" / "glmkit" / "run" / "group_door.py"
NAMES = ("A", "B")  # the two servers' served names: member 1 (awake after start) and 2
MAX_TOKENS = 16
LOG_LINES = 400  # of each process's log, kept beside the result


class Run:
    """The result, written whole after every step (a cut-short run keeps its steps)."""

    def __init__(self, out: Path, argv: list[str]) -> None:
        self.out = out
        self.started = time.monotonic()
        self.data: dict[str, Any] = {
            "about": "scripts/sleep_truth.py: a model group's switches on a GPU (issue #37)",
            "command": argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running", "events": [], "memory": [], "switches": []}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def event(self, what: str, **facts: Any) -> None:
        self.data["events"].append({"t_s": round(self.elapsed(), 2), "what": what, **facts})
        print(f"[{self.elapsed():6.1f} s] {what} {json.dumps(facts) if facts else ''}",
              flush=True)
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.out)


# --- the host ---------------------------------------------------------------------------------

def nvidia_smi(*query: str) -> list[list[str]]:
    """nvidia-smi's CSV rows for a query; [] without nvidia-smi (a dry run)."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, check=False, timeout=30)
    return [[p.strip() for p in line.split(",")] for line in done.stdout.splitlines()
            if line.strip()]


def gpu_memory(servers: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    """GPU 0's memory in use (MiB), in total and per server (its process group's
    processes, as nvidia-smi lists them)."""
    total = nvidia_smi("--query-gpu=memory.used,memory.total", "-i", "0")
    per: dict[str, float] = {}
    groups = {proc.pid: name for name, proc in servers.items()}
    for pid, used in (row[:2] for row in nvidia_smi(
            "--query-compute-apps=pid,used_memory") if len(row) >= 2):
        try:
            name = groups.get(os.getpgid(int(pid)))
        except (OSError, ValueError):
            name = None
        with contextlib.suppress(ValueError):
            per[name or "other"] = per.get(name or "other", 0.0) + float(used)
    return {"used_mib": float(total[0][0]) if total else None,
            "total_mib": float(total[0][1]) if total else None, "per_server_mib": per,
            "host_available_mib": host_available_mib()}


def host_available_mib() -> float | None:
    """The host memory available now (glmkit's MemAvailable reader), in MiB: a sleeping
    server's weights go there."""
    from glmkit.host.facts import available_memory_gib

    gib = available_memory_gib()
    return None if gib is None else round(gib * 1024, 1)


def check_imports() -> None:
    """What the servers and the door import, looked up before anything starts: a missing
    wheel costs seconds, not a start."""
    for name, why in {"vllm": "the servers", "torch": "the servers",
                      "transformers": "the generated tokenizer",
                      "tokenizers": "the generated tokenizer",
                      "aiohttp": "the door (glmkit/run/group_door.py)",
                      "prometheus_client": "the door's metrics"}.items():
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise SystemExit(f"sleep_truth.py: Python module {name!r} is not importable "
                             f"({why}); docs/gpu.md lists what the GPU host needs.")


# --- processes --------------------------------------------------------------------------------

def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Each process group: SIGTERM, then SIGKILL whatever is left after 20 s."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    ends = time.monotonic() + 20
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, ends - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError:
        return 0, ""


def wait_for(check: Any, until: float, procs: dict[str, subprocess.Popen[bytes]],
             what: str) -> float:
    """Poll `check()` until true; SystemExit when a process died or `until` passed.
    Returns the seconds waited."""
    started = time.monotonic()
    while not check():
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode} while waiting for "
                                 f"{what}")
        if time.monotonic() > until:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - started


def chat(door: str, model: str, timeout: float) -> dict[str, Any]:
    """One streamed chat request through the door: seconds to the first token and to the
    end, the model that answered."""
    body = json.dumps({"model": model, "max_tokens": MAX_TOKENS, "stream": True,
                       "ignore_eos": True, "temperature": 0,
                       "messages": [{"role": "user", "content": "w1 w2 w3"}]}).encode()
    request = urllib.request.Request(f"{door}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    sent = time.monotonic()
    first = None
    answered: set[str] = set()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            for raw in reply:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:  # vLLM reports a failure inside a 200 stream
                    return {"status": 500, "error": json.dumps(chunk)[:500]}
                answered.add(str(chunk.get("model")))
                delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                if first is None and (delta.get("content") or delta.get("reasoning")
                                      or delta.get("reasoning_content")):
                    first = time.monotonic() - sent
            status = reply.status
    except urllib.error.HTTPError as err:
        return {"status": err.code, "error": err.read().decode(errors="replace")[:500]}
    except OSError as err:
        return {"status": 0, "error": str(err)[:500]}
    return {"status": status, "ttft_s": first, "total_s": time.monotonic() - sent,
            "models": sorted(answered)}


def door_metrics(door: str) -> dict[str, float]:
    """The door's switch figures: every sample of glmkit_group_* by name and labels."""
    _, text = get(f"{door}/metrics")
    out: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(glmkit_group_[a-z_]+)(\{[^}]*\})? (\S+)$", text,
                                          re.M):
        with contextlib.suppress(ValueError):
            out[f"{name}{labels}"] = float(value)
    return out


def delta(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 3) for k in after
            if k.startswith(prefix) and after[k] != before.get(k, 0.0)}


# --- the plan ---------------------------------------------------------------------------------

def plan(memory_mib: float | None, weights_gib: float | None, utilization: float | None,
         model: str | None = None) -> dict[str, Any]:
    """The utilization the group's plan gives one awake and one asleep on this card, and
    the switch it expects (glmkit.knowledge.sleep_model)."""
    from glmkit.knowledge import sleep_model

    reserved = float(json.loads((ROOT / "src" / "glmkit" / "knowledge" /
                                 "gpu_calibration.json").read_text())
                     ["constants"]["cuda_reserved_gib"]["value"])
    out: dict[str, Any] = {"weights_gib": weights_gib, "sleep_level": 1,
                           "provenance": sleep_model.provenance()}
    if memory_mib:
        shared = sleep_model.room(memory_mib / 1024, 2, 0.9, reserved)
        out.update({"utilization": shared.utilization, "awake_gib": round(shared.awake_gib, 2),
                    "asleep_gib": round(shared.asleep_gib, 2),
                    "spare_gib": round(shared.spare_gib, 2)})
    if utilization is not None:
        out["utilization"] = utilization
        out["utilization_given"] = True
    if weights_gib:
        estimate = sleep_model.switch_estimate(1, weights_gib, weights_gib, 2.0)
        out["expected_switch_s"] = round(estimate.total_s, 2)
        out["expected"] = {"sleep_s": round(estimate.sleep_s, 2),
                           "wake_s": round(estimate.wake_s, 2), "first_s": estimate.first_s}
        # A switch holds both members' weights in host memory (the awake one sleeps first).
        out["host_memory_gib"] = round(sleep_model.host_memory_gib([weights_gib] * 2,
                                                                   [model] * 2), 1)
    return out


def shallower(model_dir: Path, config: dict[str, Any], layers: int, out: Path
              ) -> tuple[Path, dict[str, Any]]:
    """A copy of the layout's model with `layers` decoder layers: the same layer shapes
    and experts, fewer of them, so that two members' weights fit the host's memory while
    asleep (two full GLM-4.7-Flash need 154 GiB, sleep_calibration.json's switch_runs)."""
    changed = json.loads(json.dumps(config))
    text = changed.get("text_config", changed)
    if not 0 < layers <= int(text["num_hidden_layers"]):
        raise SystemExit(f"--hidden-layers {layers}: the model has "
                         f"{text['num_hidden_layers']}")
    shutil.copytree(model_dir, out)
    text["num_hidden_layers"] = layers
    (out / "config.json").write_text(json.dumps(changed, indent=1) + "\n")
    return out, changed


def weights_gib(config: dict[str, Any]) -> float | None:
    """The layout's weights as glmkit counts them (knowledge/params.py), in GiB; None for a
    config it cannot count."""
    from glmkit.knowledge.hf_config import checked_config
    from glmkit.knowledge.params import count_params

    try:
        params = count_params(checked_config(config)[0])
    except ValueError:
        return None
    if params is None:
        return None
    fp8 = bool(config.get("quantization_config"))
    return round(params.weight_bytes("fp8" if fp8 else "bf16", 1.0 if fp8 else 2.0) / 2**30, 2)


def host() -> dict[str, Any]:
    """The GPU (nvidia-smi) and the versions, without importing torch here: a CUDA context
    in this process would be GPU memory of neither server."""
    from importlib.metadata import PackageNotFoundError, version

    row = (nvidia_smi("--query-gpu=name,memory.total,driver_version", "-i", "0") or
           [["?", "0", "?"]])[0]
    out: dict[str, Any] = {"gpu": row[0], "memory_mib": float(row[1] or 0),
                           "driver": row[2] if len(row) > 2 else "?",
                           "gpu_count": len(nvidia_smi("--query-gpu=index")),
                           "date": time.strftime("%Y-%m-%d")}
    for package in ("vllm", "torch", "aiohttp", "prometheus_client"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def server_argv(launcher: Path, layout: dict[str, Any], model_dir: Path, port: int, name: str,
                utilization: float | None, sleep_flag: bool, eager: bool) -> list[str]:
    """gpu_truth's argv (the folder for the model, --load-format dummy, the loopback), the
    served name replaced, the group's utilization and sleep mode added."""
    from gpu_truth import serve_argv

    args = serve_argv(layout, model_dir, port)
    for i, word in enumerate(args[:-1]):
        if word == "--served-model-name":
            args[i + 1] = name
    if "--served-model-name" not in args:
        args += ["--served-model-name", name]
    if utilization is not None:
        if "--gpu-memory-utilization" in args:
            args[args.index("--gpu-memory-utilization") + 1] = f"{utilization:g}"
        else:
            args += ["--gpu-memory-utilization", f"{utilization:g}"]
    if sleep_flag:
        args.append("--enable-sleep-mode")
    if eager and "--enforce-eager" not in args:
        args.append("--enforce-eager")
    return [sys.executable, str(launcher), "serve", *args]


# --- the run ----------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from gpu_truth import LAUNCHER, make_tokenizer, memory_facts, read_layout

    folder = Path(args.layout)
    layout = read_layout(folder)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = Run(out, sys.argv)
    deadline = time.monotonic() + args.deadline
    check_imports()
    model_dir = (folder / "model").resolve()
    config = json.loads((model_dir / "config.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="sleep-truth-"))
    if args.hidden_layers is not None:
        try:
            model_dir, config = shallower(model_dir, config, args.hidden_layers, work / "model")
        except SystemExit:
            shutil.rmtree(work, ignore_errors=True)
            raise
    make_tokenizer(model_dir, int(config.get("text_config", config)["vocab_size"]))
    gpu = not args.cpu
    result.data["host"] = host()
    memory = gpu_memory({})
    result.data["memory"].append({"when": "before any server", **memory})
    weights = args.weights_gib or weights_gib(config)
    result.data["plan"] = plan(memory["total_mib"], weights, args.utilization, layout["model"])
    utilization = result.data["plan"].get("utilization") if gpu else None
    result.data["layout"] = {k: layout.get(k) for k in ("model", "serve_args", "environment",
                                                         "glmkit_commit", "render")}
    result.event("planned", utilization=utilization, weights_gib=weights)
    launcher = work / "vllm_main.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, **layout["environment"], "VLLM_SERVER_DEV_MODE": "1",
           "VLLM_USE_FLASHINFER_SAMPLER": "0", "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if gpu:  # as gpu_truth.py: dummy weights route every token alike without it (vLLM's
        # CPU MoE kernel refuses the simulated routing's ids: the dry run goes without)
        env["VLLM_MOE_ROUTING_SIMULATION_STRATEGY"] = "uniform_random"
    for name in ("HF_HOME", "VLLM_API_KEY"):  # the container's path; no key here
        env.pop(name, None)
    ports = {"door": args.port, "A": args.port + 1, "B": args.port + 2}
    door_url = f"http://127.0.0.1:{ports['door']}"
    servers: dict[str, subprocess.Popen[bytes]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    logs: dict[str, Path] = {}

    def term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, term)
    try:
        logs["door"] = work / "door.log"
        door = start([sys.executable, str(DOOR), "--host", "127.0.0.1", "--port",
                      str(ports["door"]), "--poll", "0.5", "--switch-timeout",
                      str(args.deadline), "--member", f"http://127.0.0.1:{ports['A']}", "A",
                      "--member", f"http://127.0.0.1:{ports['B']}", "B"], env, logs["door"])
        procs.append(door)
        # As `invoke up`: the last member first; the door puts it to sleep once healthy.
        for name in ("B", "A"):
            logs[name] = work / f"{name}.log"
            servers[name] = start(server_argv(launcher, layout, model_dir, ports[name], name,
                                              utilization, gpu, args.enforce_eager), env,
                                  logs[name])
            procs.append(servers[name])
            watched = {"door": door, **servers}
            healthy = wait_for(lambda p=ports[name]: get(
                f"http://127.0.0.1:{p}/health")[0] == 200, deadline, watched,
                f"{name} healthy")
            facts = memory_facts(logs[name].read_text(errors="replace"))
            result.data.setdefault("starts", {})[name] = {
                "healthy_s": round(healthy, 1),
                "memory_facts": {k: v for k, v in facts.items() if k != "lines"},
                "gpu_memory_healthy": gpu_memory(servers)}
            result.event(f"{name} healthy", seconds=round(healthy, 1))
            if name == "B" and facts.get("weights_gib") and not args.weights_gib:
                # What vLLM loaded: the plan's switch estimate from the real size.
                result.data["plan"] = plan(memory["total_mib"], float(facts["weights_gib"]),
                                           args.utilization, layout["model"])
                result.data["plan"]["weights_from"] = "vLLM's log (Model loading took)"
            if name == "B":
                asleep = wait_for(lambda: json.loads(get(
                    f"http://127.0.0.1:{ports['B']}/is_sleeping")[1] or "{}").get(
                        "is_sleeping") is True, deadline, watched, "the door to put B to sleep")
                result.data["starts"]["B"]["put_to_sleep_s"] = round(asleep, 2)
                result.data["starts"]["B"]["gpu_memory_asleep"] = gpu_memory(servers)
                result.event("B asleep", seconds=round(asleep, 2))
        ready = wait_for(lambda: get(f"{door_url}/health")[0] == 200, deadline,
                         {"door": door, **servers}, "the door ready")
        result.event("door ready", seconds=round(ready, 2))
        result.data["memory"].append({"when": "ready: A awake, B asleep",
                                      **gpu_memory(servers)})
        # A first request to A (no switch): the steady first token.
        result.data["steady"] = chat(door_url, "A", timeout=120)
        result.event("steady request to A", **result.data["steady"])
        if result.data["steady"].get("status") != 200:
            raise SystemExit(f"the first request to A failed: {result.data['steady']}")
        expected = float(result.data["plan"].get("expected_switch_s") or 30.0)
        # B is asleep (its weights in host memory already): the switch adds A's.
        weights_now = result.data["plan"].get("weights_gib")
        have = host_available_mib()
        if gpu and weights_now and have is not None:
            from glmkit.knowledge.sleep_model import host_memory_gib

            need = host_memory_gib([float(weights_now)], [layout["model"]])
            if need * 1024 > have:
                raise SystemExit(
                    f"not switched: putting A to sleep takes {need:.0f} GiB of host memory "
                    f"and {have / 1024:.0f} GiB is available beside the sleeping B (tried on "
                    "an H100 host of 125 GiB, the kernel ended both servers: "
                    "sleep_calibration.json's switch_runs)")
        for k in range(args.switches):
            to, frm = NAMES[(k + 1) % 2], NAMES[k % 2]
            if deadline - time.monotonic() < expected + 20:
                result.event("stopped: not enough time left for another switch",
                             left_s=round(deadline - time.monotonic(), 1))
                break
            before = door_metrics(door_url)
            memory_before = gpu_memory(servers)
            answer = chat(door_url, to, timeout=max(30.0, deadline - time.monotonic()))
            memory_after = gpu_memory(servers)
            after = door_metrics(door_url)
            seconds = delta(before, after, "glmkit_group_switch_seconds_sum")
            phases = delta(before, after, "glmkit_group_switch_phase_seconds_sum")
            switch_s = sum(seconds.values())
            again = chat(door_url, to, timeout=120)  # the same model: no switch
            record = {"from": frm, "to": to, "request": answer, "door_switch_s": switch_s,
                      "phases": {re.sub(r'.*phase="([a-z]+)".*', r"\1", key): v
                                 for key, v in phases.items()},
                      "first_token_after_wake_s": round(answer["ttft_s"] - switch_s, 3)
                      if answer.get("ttft_s") is not None and switch_s else None,
                      "next_request": again, "gpu_memory_before": memory_before,
                      "gpu_memory_after": memory_after}
            result.data["switches"].append(record)
            result.event(f"switch {frm} -> {to}", seconds=switch_s, ttft_s=answer.get("ttft_s"),
                         status=answer.get("status"))
            if answer.get("status") != 200:
                raise SystemExit(f"the request for {to} failed: {answer}")
        result.data["door_metrics"] = door_metrics(door_url)
        result.data["status"] = "done"
        return 0
    except (SystemExit, KeyboardInterrupt, Exception) as err:
        result.data["status"] = f"failed: {type(err).__name__}: {err}"[:1000]
        return 1
    finally:
        stop_all(procs)
        for name, log in logs.items():
            with contextlib.suppress(OSError):
                lines = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
                out.with_name(f"{out.stem}-{name}.log").write_text("\n".join(lines) + "\n")
        result.event(f"end: {result.data['status']}")
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layout", help="a folder from `gpu_truth.py prepare`")
    parser.add_argument("--out", default=str(ROOT / "results" / "sleep-truth.json"))
    parser.add_argument("--deadline", type=float, default=500.0,
                        help="seconds for the whole run, starts included (default 500)")
    parser.add_argument("--switches", type=int, default=4,
                        help="switches to make (A -> B, B -> A, ...) while time is left")
    parser.add_argument("--port", type=int, default=8100,
                        help="the door's port; the servers take the next two")
    parser.add_argument("--utilization", type=float, default=None,
                        help="--gpu-memory-utilization of both (default: the group plan's)")
    parser.add_argument("--weights-gib", type=float, default=None,
                        help="the weights the plan's switch estimate uses (default: counted "
                             "from the layout's config.json)")
    parser.add_argument("--hidden-layers", type=int, default=None,
                        help="serve the model with this many decoder layers (the same "
                             "shapes, fewer): two members that fit the host's memory asleep")
    parser.add_argument("--enforce-eager", action="store_true",
                        help="no torch.compile and CUDA graphs: quicker starts")
    parser.add_argument("--cpu", action="store_true",
                        help="a dry run on vLLM's CPU backend: no sleep mode, no nvidia-smi")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
