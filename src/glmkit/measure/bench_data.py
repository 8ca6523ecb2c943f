"""Benchmark data sets read offline (#19): VisionArena-Chat for `--workload visionarena`.

`vllm bench serve --dataset-name hf` reads VisionArena with `datasets.load_dataset`, which
wants the Hub. glmkit hands it a local folder instead, in the Hub repo's own layout
(`data/train-*.parquet`), with `--hf-name lmarena-ai/VisionArena-Chat` so vLLM parses it as
VisionArena, and HF_DATASETS_OFFLINE=1: either the snapshot that `invoke download --dataset
lmarena-ai/VisionArena-Chat` left in the HF cache (which every server mounts), or a folder
named by `--dataset-path` (copied into the container when no mount reaches it), e.g. the
small sample `invoke bench-data` writes. Which one, and its revision, go into the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.errors import CommandFailed, EnvironmentProblem, UsageError
from glmkit.files import Unreadable, read_json
from glmkit.measure.workloads import VISIONARENA
from glmkit.policy import admit_mount
from glmkit.process import run

DATASETS = (VISIONARENA,)  # what `invoke download --dataset` fetches: what bench reads
ALLOW_PATTERNS = ["data/*.parquet", "*.json", "README.md"]
INFO = "glmkit-dataset.json"  # written by scripts/make_visionarena_sample.py
SAMPLE_SCRIPT = "make_visionarena_sample.py"
CONTAINER_HF = "/root/.cache/huggingface"  # where plan/serve.py mounts the HF cache
CONTAINER_DATA = "/tmp/glmkit-datasets"  # copies of folders no mount reaches
MAX_SAMPLE_ROWS = 10_000
# A revision names the folder a data set is copied to inside the server's container: one
# path part, never `..` (a folder's own glmkit-dataset.json is not trusted to name it).
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MISSING = (f"VisionArena is not on this machine: `invoke download --dataset {VISIONARENA}` "
           "(needs the Hub) or `--dataset-path DIR` with data/*.parquet in its format "
           "(`invoke bench-data --out DIR` writes a small one).")


@dataclass(frozen=True)
class DatasetSource:
    folder: Path  # on the host: the folder with data/*.parquet
    revision: str  # the Hub snapshot's commit, or sample-/local- and a content hash
    origin: str  # "hf-cache" or "local"


def parquet_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("data/*.parquet"), *folder.glob("*.parquet")])


MAX_INFO_BYTES = 64 * 1024  # glmkit-dataset.json and the completion marker: a few lines


def revision_ok(text: object) -> bool:
    return isinstance(text, str) and bool(_REVISION.match(text)) and ".." not in text


def _content_revision(folder: Path, files: list[Path]) -> str:
    try:
        info = read_json(folder / INFO, MAX_INFO_BYTES, links_within=folder)
        if revision_ok(info.get("revision")):
            return str(info["revision"])
    except (Unreadable, AttributeError):  # a FIFO or /dev/zero as INFO too
        pass
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}\n".encode())
    return f"local-{digest.hexdigest()[:12]}"


def snapshot(hf_cache: Path, repo: str = VISIONARENA) -> Path | None:
    """The newest complete snapshot of a data set repo in the HF cache, if any."""
    marker = hf_cache / "glmkit-complete" / f"datasets--{repo.replace('/', '--')}.json"
    try:
        path = Path(read_json(marker, MAX_INFO_BYTES)["path"])
    except (Unreadable, KeyError, TypeError):
        return None
    return path if path.is_dir() and parquet_files(path) else None


def locate_visionarena(dataset_path: str | None, hf_cache: Path) -> DatasetSource:
    """The folder `--workload visionarena` reads: `--dataset-path`, else the HF cache's
    downloaded snapshot; a UsageError in one line when neither is there."""
    if dataset_path is not None:
        folder = admit_mount(dataset_path, "--dataset-path", Path.home())
        if not folder.is_dir():
            raise UsageError(f"--dataset-path {dataset_path!r} is not a folder.")
        files = parquet_files(folder)
        if not files:
            raise UsageError(f"--dataset-path {dataset_path!r} has no data/*.parquet: not a "
                             f"VisionArena-Chat folder. {MISSING}")
        return DatasetSource(folder, _content_revision(folder, files), "local")
    found = snapshot(hf_cache)
    if found is None:
        raise UsageError(MISSING)
    revision = found.name if revision_ok(found.name) else \
        _content_revision(found, parquet_files(found))
    return DatasetSource(found, revision, "hf-cache")


def container_folder(source: DatasetSource, container: Any) -> str | None:
    """The folder's path inside the server's container when a mount reaches it."""
    for mount in container.attrs.get("Mounts") or []:
        host, inside = mount.get("Source"), mount.get("Destination")
        if not host or not inside:
            continue
        try:
            relative = source.folder.relative_to(Path(host).resolve())
        except ValueError:
            continue
        return str(Path(inside) / relative)
    return None


def stage(source: DatasetSource, container: Any) -> str:
    """The data set's folder inside the container: through a mount, else copied in
    (`docker cp`, once per revision)."""
    inside = container_folder(source, container)
    if inside is not None:
        return inside
    if not revision_ok(source.revision):  # it names a path inside the container
        raise UsageError(f"Data set revision {source.revision[:80]!r} is not one path part.")
    target = f"{CONTAINER_DATA}/{source.revision}"
    if run(["docker", "exec", container.name, "test", "-d", target], check=False).returncode:
        run(["docker", "exec", container.name, "mkdir", "-p", CONTAINER_DATA])
        run(["docker", "cp", f"{source.folder}/.", f"{container.name}:{target}"])
    return target


def make_sample(image: str, out_dir: str, scripts_dir: Path, rows: int = 32) -> dict[str, Any]:
    """`invoke bench-data`: a small VisionArena-Chat folder, made inside the CPU image."""
    if not 1 <= rows <= MAX_SAMPLE_ROWS:
        raise UsageError(f"--rows {rows}: give 1 to {MAX_SAMPLE_ROWS}.")
    out = admit_mount(out_dir, "--out", Path.home())
    if any(c in str(out) for c in ":,"):  # `docker run -v SRC:DST` would split it there
        raise UsageError(f"--out {out_dir[:80]!r}: a folder whose path has ':' or ',' cannot "
                         "be mounted; choose another.")
    try:
        taken = out.exists() and (not out.is_dir() or any(out.iterdir()))
    except OSError as err:  # a name longer than the file system takes, no permission
        raise UsageError(f"--out {out_dir[:80]!r}: {err.strerror}.") from None
    if taken:
        raise UsageError(f"--out {out_dir[:80]!r} exists and is not an empty folder.")
    # A fresh staging folder beside --out: never someone's existing `.partial` folder
    # (removed) or a link planted under that name (followed).
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; the sample is meant to be read
    argv = ["docker", "run", "--rm", "--network", "none",
            "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
            "-v", f"{scripts_dir.resolve()}:/glmkit-scripts:ro",
            "-v", f"{staging}:/out", "--entrypoint", "python3", image,
            f"/glmkit-scripts/{SAMPLE_SCRIPT}", "/out", "--rows", str(rows)]
    try:
        run(argv)
    except CommandFailed as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise EnvironmentProblem("Writing the VisionArena sample failed: "
                                 f"{(err.stderr or err.stdout).strip()[-600:]}") from None
    # What the container wrote is data: a plain file of a few lines, its rows a count.
    try:
        info = read_json(staging / INFO, MAX_INFO_BYTES)
    except Unreadable as err:
        info = {"error": str(err)}
    if not (isinstance(info, dict) and type(info.get("rows")) is int
            and revision_ok(info.get("revision"))):
        shutil.rmtree(staging, ignore_errors=True)
        raise EnvironmentProblem(f"The VisionArena sample's {INFO} is not what the script "
                                 "writes (rows and a revision); nothing was kept.")
    if out.exists():
        out.rmdir()
    staging.rename(out)
    return {"rows": info["rows"], "revision": info["revision"], "path": str(out)}


def download_dataset(repo: str, revision: str | None, hf_cache: Path,
                     env: Mapping[str, str]) -> str:
    """`invoke download --dataset`: a benchmark data set's parquet files into the HF cache
    (resumable: huggingface_hub skips what is there), recorded as complete; GSM8K, what
    `invoke eval` asks, through eval_data."""
    from huggingface_hub import snapshot_download

    from glmkit.files import atomic_write
    from glmkit.host.hub import explain_hub_error, hf_token
    from glmkit.measure.eval_data import GSM8K_NAMES, download_gsm8k

    if repo in GSM8K_NAMES:  # what `invoke eval` asks
        return download_gsm8k(revision, hf_cache, env)
    if repo not in DATASETS:
        raise UsageError(f"--dataset {repo[:120]!r}: glmkit benchmarks with "
                         f"{', '.join(DATASETS)} and evaluates with gsm8k.")
    token = hf_token(env)
    hub = hf_cache / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(snapshot_download(repo, repo_type="dataset", cache_dir=hub, token=token,
                                      revision=revision, allow_patterns=ALLOW_PATTERNS))
    except Exception as err:  # the Hub client's HTTP and network errors: explained
        raise explain_hub_error(err, repo, token) from None
    files = parquet_files(path)
    record = {"dataset": repo, "revision": path.name, "path": str(path), "files": len(files)}
    atomic_write(hf_cache / "glmkit-complete" / f"datasets--{repo.replace('/', '--')}.json",
                 json.dumps(record, indent=2) + "\n")
    return f"{repo}@{path.name[:12]}: {len(files)} parquet files → {path}"
