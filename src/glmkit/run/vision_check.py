"""Vision cases of `invoke check` (#19): images and video through the API, for real.

On a vision model's server, images go in every way vLLM takes them: a base64 data URL, a
`file://` URL under the mounted media folder (`--media-dir`, served read-only as /media;
a path outside it must be refused), an `http://` URL served by a throwaway server on
this host that only the container's network can reach, a video (GLM-V takes one, as JPEG
frames), several images in one message; through chat completions, Anthropic's
`/v1/messages` and the Responses API. Random weights answer nothing useful, so the cases
assert what shows that the image reached the model: the request is served, usage is
reported, the prompt grows by the image's tokens (more for a bigger image, twice for two
images), the finish reason is one of the model's. Hostile inputs (a file outside the
media folder, a path that climbs out of it, a data URL that is not an image) must be
refused with a 4xx and leave the server serving.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.run.tool_check import CaseResult

MEDIA = "/media"  # where plan/serve.py mounts --media-dir (CONTAINER_MEDIA)
MAX_TOKENS = 4
FINISH = ("stop", "length")
# vLLM 0.32's /v1/messages reads text and tool blocks only; where it drops an image
# block, the prompt does not grow and the row says so.
SMALL, LARGE = (56, 56), (224, 224)


def png(size: tuple[int, int], color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 8):  # a pattern, so the pixels are not all alike
        image.putpixel((x, x % size[1]), (255, 255, 255))
    image.save(out, "PNG")
    return out.getvalue()


def jpeg(size: tuple[int, int], shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 128)).save(out, "JPEG")
    return out.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def video_url(frames: int = 4, size: tuple[int, int] = SMALL) -> str:
    """A video as vLLM takes it inline: JPEG frames, base64, joined by commas."""
    return "data:video/jpeg;base64," + ",".join(
        base64.b64encode(jpeg(size, 30 * i)).decode() for i in range(frames))


@dataclass(frozen=True)
class Outcome:
    """One request's answer, whatever the API: prompt tokens and finish reason."""

    prompt_tokens: int | None
    finish: str | None


def chat_parts(urls: list[tuple[str, str]], text: str) -> list[dict[str, Any]]:
    """OpenAI chat content: ("image"|"video", url) parts, then the question."""
    parts: list[dict[str, Any]] = [
        {"type": "video_url", "video_url": {"url": url}} if kind == "video" else
        {"type": "image_url", "image_url": {"url": url}} for kind, url in urls]
    return [*parts, {"type": "text", "text": text}]


QUESTION = "What is in the picture?"


def ask_chat(client: Any, model: str, urls: list[tuple[str, str]]) -> Outcome:
    reply = client.chat.completions.create(
        model=model, max_tokens=MAX_TOKENS, temperature=0, seed=0,
        messages=[{"role": "user", "content": chat_parts(urls, QUESTION) if urls
                   else QUESTION}],
        extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    usage = reply.usage
    return Outcome(usage.prompt_tokens if usage else None, reply.choices[0].finish_reason)


def ask_messages(client: Any, model: str, images: list[bytes]) -> Outcome:
    content: list[dict[str, Any]] = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(i).decode()}} for i in images]
    content.append({"type": "text", "text": QUESTION})
    reply = client.messages.create(model=model, max_tokens=MAX_TOKENS,
                                   messages=[{"role": "user", "content": content}],
                                   extra_body={"temperature": 0})
    usage = getattr(reply, "usage", None)
    stop = {"end_turn": "stop", "max_tokens": "length"}.get(str(reply.stop_reason),
                                                              str(reply.stop_reason))
    return Outcome(getattr(usage, "input_tokens", None), stop)


def ask_responses(client: Any, model: str, images: list[bytes]) -> Outcome:
    content: list[dict[str, Any]] = [{"type": "input_image", "image_url": data_url(i)}
                                     for i in images]
    content.append({"type": "input_text", "text": QUESTION})
    reply = client.responses.create(model=model, max_output_tokens=16, temperature=0,
                                    input=[{"role": "user", "content": content}])
    usage = getattr(reply, "usage", None)
    status = str(getattr(reply, "status", ""))
    finish = "stop" if status == "completed" else "length" if status == "incomplete" \
        else status
    return Outcome(getattr(usage, "input_tokens", None), finish)


def _error(err: Exception) -> str:
    return f"{err.__class__.__name__}: {(str(err).splitlines() or [''])[0][:140]}"


def _status(err: Exception) -> int | None:
    code = getattr(err, "status_code", None)
    return code if isinstance(code, int) else None


def grew(base: Outcome, got: Outcome, more_than: int = 0) -> str | None:
    """None when the image reached the model: served, usage, a finish reason, a prompt
    longer than the text-only one (by more than `more_than` tokens)."""
    if got.prompt_tokens is None or base.prompt_tokens is None:
        return "no usage in the reply"
    if got.finish not in FINISH:
        return f"finish reason {got.finish!r}"
    added = got.prompt_tokens - base.prompt_tokens
    if added <= more_than:
        return (f"prompt {got.prompt_tokens} tokens, {added:+d} against the text-only "
                f"{base.prompt_tokens} (expected more than {more_than:+d}): the image did not "
                "reach the model")
    return None


@dataclass
class Rows:
    """The vision rows of the check table."""

    rows: list[CaseResult]

    def add(self, api: str, case: str, problem: str | None, passed: str = "ok") -> None:
        self.rows.append(CaseResult(f"vision: {case}", "-", False, False, problem is None,
                                    problem or passed, api=api))

    def media(self, api: str, case: str, ask: Callable[[], Outcome], base: Outcome,
              more_than: int = 0) -> Outcome | None:
        """A request that carries media: passes when the prompt grew; its answer back."""
        try:
            got = ask()
        except Exception as err:  # the client's HTTP and API errors: a failed case
            self.add(api, case, _error(err))
            return None
        self.add(api, case, grew(base, got, more_than), _tokens(base, got))
        return got

    def refused(self, api: str, case: str, ask: Callable[[], Outcome]) -> None:
        problem, said = expect_refused(ask)
        self.add(api, case, problem, said)


def expect_refused(ask: Callable[[], Outcome]) -> tuple[str | None, str]:
    """A hostile input: the server must answer 4xx (not serve it, not fail with 5xx).
    (problem or None, what the server said)."""
    try:
        got = ask()
    except Exception as err:
        code = _status(err)
        if code is not None and 400 <= code < 500:
            return None, f"refused ({_error(err)[:100]})"
        return f"expected a 4xx refusal, got {_error(err)}", ""
    return f"served it (prompt {got.prompt_tokens} tokens): expected a refusal", ""


def _tokens(base: Outcome, got: Outcome) -> str:
    if got.prompt_tokens is None or base.prompt_tokens is None:
        return "ok"
    return (f"prompt {got.prompt_tokens} tokens ({got.prompt_tokens - base.prompt_tokens:+d} "
            f"for the media), finish {got.finish}")


def _added(base: Outcome, got: Outcome | None) -> int:
    return (got.prompt_tokens or 0) - (base.prompt_tokens or 0) if got else 0


@contextlib.contextmanager
def image_server(host: str, body: bytes) -> Iterator[str]:
    """A one-file HTTP server on `host` (the container network's gateway, so only
    containers on that network reach it), for as long as the block runs."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/glmkit-check.png"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def media_file(folder: Path | None, body: bytes) -> Iterator[str | None]:
    """A test image in the host's media folder, removed afterwards; None without one (or
    when the folder cannot be written: the row says so)."""
    if folder is None:
        yield None
        return
    # A new file of its own (O_EXCL, random name): a link planted in the media folder under
    # a name glmkit would use is never followed, overwritten or opened up to 0644.
    try:
        fd, name = tempfile.mkstemp(prefix=".glmkit-check-", suffix=".png", dir=folder)
    except OSError:
        yield None
        return
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # the server reads it as another user
            out.write(body)
    except OSError:
        path.unlink(missing_ok=True)
        yield None
        return
    try:
        yield f"file://{MEDIA}/{path.name}"
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class VisionTarget:
    """What the cases need of the server: its URL and key, model, whether it serves local
    media (and from which host folder), and its network's gateway for the HTTP case."""

    base_url: str
    api_key: str | None
    model: str
    media_dir: Path | None  # host folder behind /media; None when not served
    gateway: str | None  # host address the container reaches; None when unknown


def run_vision(t: VisionTarget, apis: tuple[str, ...], clients: Any) -> list[CaseResult]:
    """Every vision case through each API asked for; `clients` is api_check.Clients."""
    rows = Rows([])
    if "chat" in apis:
        chat_cases(rows, t, clients.openai)
    for api in ("messages", "responses"):
        if api in apis:
            other_api_cases(rows, t, api, clients)
    return rows.rows


def other_api_cases(rows: Rows, t: VisionTarget, api: str, clients: Any) -> None:
    """Images through /v1/messages (Anthropic image blocks) or /v1/responses
    (input_image parts), as base64."""
    ask = ask_messages if api == "messages" else ask_responses
    client = clients.anthropic if api == "messages" else clients.openai
    small = png(SMALL)
    try:
        base = ask(client, t.model, [])
    except Exception as err:  # the API itself does not answer: one row says why
        rows.add(api, "text-only baseline", _error(err))
        return
    one = rows.media(api, "image (base64)", lambda: ask(client, t.model, [small]), base)
    rows.media(api, "two images in one message",
               lambda: ask(client, t.model, [small, small]), base, _added(base, one))


def chat_cases(rows: Rows, t: VisionTarget, client: Any) -> None:
    small, large = data_url(png(SMALL)), data_url(png(LARGE))

    def ask(*urls: tuple[str, str]) -> Callable[[], Outcome]:
        return lambda: ask_chat(client, t.model, list(urls))

    base = ask()()
    one = rows.media("chat", "image (base64 data URL)", ask(("image", small)), base)
    added = _added(base, one)
    rows.media("chat", "bigger image, more tokens", ask(("image", large)), base, added)
    rows.media("chat", "two images in one message", ask(("image", small), ("image", small)),
               base, added)
    with media_file(t.media_dir, png(SMALL)) as url:
        if url is None:
            rows.add("chat", "image file under the media folder",
                     "the server serves no media folder (start it with --media-dir)"
                     if t.media_dir is None else "the media folder cannot be written here")
        else:
            rows.media("chat", "image file under the media folder", ask(("image", url)), base)
    if t.gateway is None:
        rows.add("chat", "image by http URL", "no network gateway for this container")
    else:
        with image_server(t.gateway, png(SMALL)) as url:
            rows.media("chat", "image by http URL", ask(("image", url)), base)
    rows.media("chat", "video (4 JPEG frames)", ask(("video", video_url())), base)
    # Hostile inputs: refused (4xx), never read.
    for case, url in (("refused: file outside the media folder", "file:///etc/passwd"),
                      ("refused: path climbing out of the media folder",
                       f"file://{MEDIA}/../etc/passwd"),
                      ("refused: data URL that is not an image",
                       "data:image/png;base64,bm90IGFuIGltYWdl")):
        rows.refused("chat", case, ask(("image", url)))
    rows.media("chat", "still serving after the refusals", ask(("image", small)), base)


def vision_target(container: Any, base_url: str, api_key: str | None, model: str,
                  serve_args: tuple[str, ...]) -> VisionTarget:
    """Read the media folder and the gateway from the server's container."""
    from glmkit.vllm_args import flag_value

    media = None
    if flag_value(serve_args, "--allowed-local-media-path") == MEDIA:
        for mount in container.attrs.get("Mounts") or []:
            if mount.get("Destination") == MEDIA and mount.get("Source"):
                media = Path(mount["Source"])
    gateway = None
    for net in (container.attrs.get("NetworkSettings") or {}).get("Networks", {}).values():
        gateway = gateway or net.get("Gateway") or None
    mode = str((container.attrs.get("HostConfig") or {}).get("NetworkMode") or "")
    if gateway is None and mode.startswith("container:"):
        # A model group's member lives in its door's network namespace: the door's gateway.
        with contextlib.suppress(Exception):
            door = container.client.containers.get(mode.split(":", 1)[1])
            for net in (door.attrs.get("NetworkSettings") or {}).get("Networks", {}).values():
                gateway = gateway or net.get("Gateway") or None
    return VisionTarget(base_url, api_key, model, media, gateway)
