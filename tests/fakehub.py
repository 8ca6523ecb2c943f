"""A local HTTP server speaking the part of the Hugging Face Hub API that
huggingface_hub's `snapshot_download` uses, so the real client can be tested offline.

Repos are folders (`repos`: models, `datasets`: data sets); a repo named in `gated` needs
`Authorization: Bearer <token>`; `cut_once` names files whose first GET is cut off
half-way (to test resuming). `gsm8k_sample` writes a small data set in openai/gsm8k's
layout (main/train-*.parquet, main/test-*.parquet) for `invoke download --dataset gsm8k`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Hub:
    repos: dict[str, Path]
    gated: set[str] = field(default_factory=set)
    token: str = "hf_goodtoken"
    cut_once: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    datasets: dict[str, Path] = field(default_factory=dict)


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data: object) -> None:
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _repo(self, repo_id: str, kind: str = "models") -> Path | None:
            repos = hub.datasets if kind == "datasets" else hub.repos
            if repo_id not in repos:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            if repo_id in hub.gated and \
                    self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted")
                return None
            return repos[repo_id]

        def _files(self, root: Path) -> list[Path]:
            return sorted(p for p in root.rglob("*") if p.is_file())

        def do_HEAD(self) -> None:
            self._serve_file(head=True)

        def do_GET(self) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            parts = path.strip("/").split("/")
            kind = parts[1] if len(parts) > 1 else ""
            if parts[0] == "api" and kind in ("models", "datasets") and len(parts) >= 6 \
                    and parts[4] == "revision":
                repo_id = "/".join(parts[2:4])
                if (root := self._repo(repo_id, kind)) is not None:
                    self._json({"id": repo_id, "modelId": repo_id, "sha": COMMIT,
                                "private": False, "gated": repo_id in hub.gated,
                                "siblings": [{"rfilename": str(p.relative_to(root))}
                                             for p in self._files(root)]})
                return
            if parts[0] == "api" and kind in ("models", "datasets") and len(parts) >= 6 \
                    and parts[4] == "tree":
                repo_id = "/".join(parts[2:4])
                if (root := self._repo(repo_id, kind)) is not None:
                    self._json([{"type": "file", "path": str(p.relative_to(root)),
                                 "size": p.stat().st_size,
                                 "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                                for p in self._files(root)])
                return
            self._serve_file(head=False)

        def _serve_file(self, head: bool) -> None:
            path = unquote(urlparse(self.path).path)
            if head:
                hub.requests.append((self.command, path, None))
            parts = path.strip("/").split("/")
            kind = "models"
            if parts[0] == "datasets":
                kind, parts = "datasets", parts[1:]
            if len(parts) < 5 or parts[2] != "resolve":
                self._error(404, "EntryNotFound", "no such route")
                return
            repo_id = "/".join(parts[:2])
            if (root := self._repo(repo_id, kind)) is None:
                return
            name = "/".join(parts[4:])
            file = root / name
            if not file.is_file():
                self._error(404, "EntryNotFound", f"{name} not found")
                return
            data = file.read_bytes()
            start = 0
            if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
                start = int(rng.removeprefix("bytes=").split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            body = data[start:]
            if name in hub.cut_once and not start:
                hub.cut_once.discard(name)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(hub: Hub) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def gsm8k_sample(root: Path, train: int = 8, test: int = 12) -> Path:
    """A small data set in openai/gsm8k's layout and schema: `question` and `answer`
    (reasoning, then "#### N") string columns in main/{train,test}-00000-of-00001.parquet.
    Question i's answer is 3 * i + 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "main").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        table = pa.table({
            "question": [f"{split} {i}: Tom has {i} boxes of 3 pens and 1 more pen. How "
                         "many pens?" for i in range(rows)],
            "answer": [f"{i} boxes hold {i} * 3 = <<{i}*3={3 * i}>>{3 * i} pens, and one "
                       f"more makes {3 * i + 1}.\n#### {3 * i + 1}" for i in range(rows)]})
        pq.write_table(table, root / "main" / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text("# gsm8k sample\n")
    return root
