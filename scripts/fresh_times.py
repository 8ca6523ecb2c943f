"""The README's two times as a newcomer waits them: make this machine as fresh as a new one,
then time `bash scripts/quickstart.sh` and the README's test command, and write the
minutes, the date and the machine into the README.

    python3 scripts/fresh_times.py --yes [--keep-engine] [--write-readme | --quickstart-only]

"Fresh" removes what a new machine lacks and a run leaves behind: every glmkit container,
image and volume (the compile caches), the base image and Docker's build cache, the
tiny models, the wheelhouse and the agents' npm packages (~/.cache/glmkit), the virtual
environment, pip's and uv's caches and npm's; without --keep-engine also the Docker
engine and Compose (Debian packages, /var/lib/docker), which the quick start installs
again. It runs as root on a machine of its own: it removes images other projects may
use, so it asks for --yes. Nothing here reads the results store or imports glmkit, so it
runs before the quick start has made .venv.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORD = ROOT / "docs" / "fresh-times.json"
HOME = Path(os.environ.get("GLMKIT_HOME") or Path.home() / ".cache" / "glmkit")
ENGINE_PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin",
                   "docker-buildx-plugin", "docker.io", "docker-compose", "containerd"]
CACHES = [HOME, Path.home() / ".cache" / "pip", Path.home() / ".cache" / "uv",
          Path.home() / ".npm", ROOT / ".venv"]


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def lines(*argv: str) -> list[str]:
    return [w for w in sh(*argv).stdout.split() if w]


def make_fresh(keep_engine: bool) -> None:
    if shutil.which("docker") and sh("docker", "info").returncode == 0:
        containers = lines("docker", "ps", "-aq", "--filter", "label=io.glmkit.managed=true")
        if containers:
            sh("docker", "rm", "-f", *containers)
        images = [i for i in lines("docker", "images", "--format", "{{.Repository}}:{{.Tag}}")
                  if i.startswith(("glmkit/", "debian:bookworm-slim"))]
        if images:
            sh("docker", "rmi", "-f", *images)
        volumes = [v for v in lines("docker", "volume", "ls", "-q") if v.startswith("glmkit")]
        if volumes:
            sh("docker", "volume", "rm", "-f", *volumes)
        sh("docker", "image", "prune", "-f")
        sh("docker", "builder", "prune", "-af")
    if not keep_engine and shutil.which("apt-get"):
        sh("systemctl", "stop", "docker")
        sh("pkill", "-x", "dockerd")
        sh("pkill", "-x", "containerd")
        # Only what is installed: apt-get refuses the whole list over one unknown name
        # (docker-ce on a Debian-packaged engine), and the engine would stay.
        installed = [name for name in ENGINE_PACKAGES if sh(
            "dpkg-query", "-W", "-f=${Status}", name).stdout.startswith("install ok installed")]
        if installed:
            purged = sh("apt-get", "purge", "-y", "-q", *installed)
            if purged.returncode != 0:
                raise SystemExit(f"apt-get purge {' '.join(installed)} failed: "
                                 f"{purged.stderr.strip()[-300:]}")
        if shutil.which("dockerd"):
            raise SystemExit(f"dockerd is still installed ({shutil.which('dockerd')}): "
                             "this machine would not be fresh")
        shutil.rmtree("/var/lib/docker", ignore_errors=True)
        shutil.rmtree("/var/lib/containerd", ignore_errors=True)
    for folder in CACHES:
        shutil.rmtree(folder, ignore_errors=True)


def timed(argv: list[str], log: Path) -> tuple[float, int]:
    started = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                              check=False).returncode
    return time.monotonic() - started, code


STEP = re.compile(r"^\[glmkit\] (.+) done in (\d+) s$", re.M)


def steps(log_text: str) -> dict[str, int]:
    """The seconds of each step setup.sh and quickstart.sh print ("[glmkit] X done in N
    s"), in order: where a fresh machine's minutes go."""
    found: dict[str, int] = {}
    for name, seconds in STEP.findall(log_text):
        found[name] = found.get(name, 0) + int(seconds)
    return found


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB"


def measured(record: dict[str, object]) -> str:
    """How the README's minutes were measured, in its words."""
    removed = "no Docker, " if record.get("engine_removed") else ""
    return (f"measured {record['date']} on a fresh machine of {record['machine']}: "
            f"{record['quickstart_s']} s and {record['test_s']} s (scripts/fresh_times.py at "
            f"{record['commit']}; {removed}no images, models, npm packages or compile "
            "caches)")


def stamped(text: str, record: dict[str, object]) -> str:
    """The README's text with the measured minutes and how they were measured."""
    for key in ("quickstart", "test"):
        minutes = round(float(str(record[f"{key}_s"])) / 60)
        text, count = re.subn(rf"(<!-- {key}-minutes -->).*?(<!-- /{key}-minutes -->)",
                              rf"\g<1>{minutes}\g<2>", text)
        if count != 1:
            raise SystemExit(f"README.md has no single <!-- {key}-minutes --> marker")
    text, count = re.subn(r"(<!-- fresh-times -->).*?(<!-- /fresh-times -->)",
                          lambda m: f"{m[1]}{record['measured']}{m[2]}", text, flags=re.S)
    if count != 1:
        raise SystemExit("README.md has no single <!-- fresh-times --> marker")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yes", action="store_true", help="really remove the caches above")
    parser.add_argument("--keep-engine", action="store_true",
                        help="leave the Docker engine installed (not a new machine)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write-readme", action="store_true")
    what.add_argument("--quickstart-only", action="store_true",
                      help="time the quick start alone (its steps), not the tests")
    parser.add_argument("--logs", default="/tmp/glmkit-fresh-times")
    parser.add_argument("--from-record", action="store_true",
                        help=f"only write the README from {RECORD.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.from_record:
        record = json.loads(RECORD.read_text())
        missing = {"date", "machine", "quickstart_s", "test_s", "commit"} - set(record)
        if missing:
            raise SystemExit(f"{RECORD.relative_to(ROOT)} lacks {', '.join(sorted(missing))}:"
                             " measure again")
        record["measured"] = measured(record)
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
        README.write_text(stamped(README.read_text(), record))
        return 0
    if not args.yes:
        raise SystemExit("fresh_times.py removes glmkit's images, caches and (without "
                         "--keep-engine) Docker itself: pass --yes on a machine of its own")
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    make_fresh(args.keep_engine)
    quick_s, quick_rc = timed(["bash", "scripts/quickstart.sh"], logs / "quickstart.log")
    if quick_rc != 0:
        raise SystemExit(f"the quick start failed (exit {quick_rc}): see "
                         f"{logs / 'quickstart.log'}")
    quick_steps = steps((logs / "quickstart.log").read_text(errors="replace"))
    if args.quickstart_only:
        print(json.dumps({"quickstart_s": round(quick_s), "steps_s": quick_steps,
                          "machine": machine()}, indent=1))
        return 0
    test_s, test_rc = timed([str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest"],
                            logs / "tests.log")
    tail = (logs / "tests.log").read_text(errors="replace").strip().splitlines()[-1:]
    commit = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD").stdout.strip()
    record = {
        "quickstart_s": round(quick_s), "quickstart_steps_s": quick_steps,
        "test_s": round(test_s), "test_exit": test_rc,
        "test_summary": tail[0] if tail else "", "commit": commit,
        "engine_removed": not args.keep_engine, "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    record["measured"] = measured(record)
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    if args.write_readme:
        README.write_text(stamped(README.read_text(), record))
    return 0 if test_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
