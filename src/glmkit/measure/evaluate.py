"""`invoke eval`: GSM8K against the running server, gated on published scores and saved
baselines (#34).

    running server (labels: model, key, URL) + question set + protocol
        ─▶ requests, `concurrency` at a time, a progress bar ─▶ each answer judged
        ─▶ results/eval/<run-id>/ ─▶ the gate (eval_gate) ─▶ one summary line

The run folder, beside the benchmark runs (results/<run-id>/), checks and tunes:

    results/eval/<run-id>/eval.json      what ran: model, image and digest, vLLM version,
                                         serve flags, hardware, protocol, data set and its
                                         revision, which questions (limit, seed)
    results/eval/<run-id>/fewshot.txt    the few-shot block every prompt shares, once
    results/eval/<run-id>/answers.jsonl  one line per question: index, prompt id, the
                                         reply, what each extraction read, the target,
                                         the verdicts (or why it has none)
    results/eval/<run-id>/summary.json   complete or partial, the counts, the gate
    results/eval/baselines/*.json        `--save-baseline`: a model's reference here

Each file is written once, whole (glmkit.files), so a run that stops at any point
leaves no half-written file: a server that dies, times out or answers garbage ends the
run with the finished questions kept and the run marked partial.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from glmkit import __version__
from glmkit.errors import AccuracyFailed, BenchFailed, Interrupted, UsageError
from glmkit.files import atomic_write, write_json_once
from glmkit.measure.accuracy import (
    METRICS,
    Metric,
    Problem,
    Protocol,
    Verdict,
    chat_messages,
    completion_prompt,
    fewshot_block,
    format_problem,
    judge,
    prompt_id,
    protocol_named,
)
from glmkit.measure.eval_data import DATASETS, GSM8K, TINY, EvalSet, load_set
from glmkit.measure.eval_gate import Baseline as BaselineDoc
from glmkit.measure.eval_gate import (
    Correct,
    Outcome,
    Reference,
    RunScore,
    Target,
    applicable,
    baseline_target,
    baselines_of,
    compare,
    load_references,
    reference_target,
    save_baseline,
    wilson,
)
from glmkit.text import one_line

EVAL_DIR = "eval"
BASELINES = "baselines"
META, FEWSHOT, ANSWERS, SUMMARY = "eval.json", "fewshot.txt", "answers.jsonl", "summary.json"
META_VERSION = 1
MAX_REPLY = 64 * 1024  # characters of a reply (or its reasoning) kept per question
# Requests that fail one after another before the run stops sending: the server is
# gone, not one question unlucky.
MAX_FAILURES_IN_A_ROW = 5
DEFAULT_CONCURRENCY = 32
Status = Literal["complete", "partial", "interrupted"]


# --- the request ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    project: str
    protocol: Protocol
    dataset: str | None = None  # None: the tiny set for the tiny model, else GSM8K
    limit: int | None = None  # None: every test question
    seed: int = 1234
    concurrency: int | None = None  # None: 32, or fewer with --max-num-seqs
    against: str | None = None
    save_baseline: bool = False
    model: str | None = None  # the name requests ask for; None: the served model
    timeout_s: float = 600.0  # per request, as vLLM CI's eval
    label: str | None = None


def _text_option(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    if not value.strip() or len(value) > 200 or not value.isprintable():
        raise UsageError(f"--{option} {value[:40]!r}: give a name of at most 200 printable "
                         "characters.")
    return value.strip()


def parse_request(project: str, *, protocol: str | None, dataset: str | None,
                  limit: str | None, seed: str | None, concurrency: str | None,
                  against: str | None, save_baseline: bool, model: str | None,
                  label: str | None = None) -> EvalRequest:
    """`invoke eval`'s text options, each checked once, before any server is looked up."""
    from glmkit.host.settings import task_option
    from glmkit.measure.results import plain_name

    if dataset is not None and dataset not in DATASETS:
        raise UsageError(f"--dataset {dataset[:40]!r}: choose {' or '.join(DATASETS)}.")
    if label is not None:
        plain_name(label, "Label")
    return EvalRequest(
        project=project, protocol=protocol_named(task_option("eval", "protocol", protocol)),
        dataset=dataset, limit=task_option("eval", "limit", limit) or None,
        seed=task_option("eval", "seed", seed),
        concurrency=task_option("eval", "concurrency", concurrency) or None,
        against=_text_option(against, "against"), save_baseline=save_baseline,
        model=_text_option(model, "model"), label=label)


def up_eval_request(project: str, given: bool | str | None) -> EvalRequest | None:
    """`invoke up --eval [N]`: None when not asked; the default protocol over the
    model's whole set (`--eval`) or a seeded sample of N (`--eval N`)."""
    if given is None or given is False:
        return None
    limit = None if given is True else given
    try:
        return parse_request(project, protocol=None, dataset=None, limit=limit, seed=None,
                             concurrency=None, against=None, save_baseline=False,
                             model=None)
    except UsageError as err:  # the option the user gave is --eval
        raise UsageError(str(err).replace("--limit", "--eval", 1)) from None


# --- one question -----------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """One question's outcome: the reply and its verdicts, or why there is none."""

    index: int
    prompt_id: str
    question: str
    target: str
    reply: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    verdict: Verdict | None = None
    format: str | None = None  # a chat reply the protocol cannot score
    error: str | None = None  # no reply: HTTP error, timeout, garbage
    seconds: float = 0.0
    tokens: int | None = None

    @property
    def answered(self) -> bool:
        return self.error is None

    def ok(self, metric: Metric) -> bool:
        return self.verdict is not None and self.format is None and self.verdict.ok(metric)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = None if self.verdict is None else {
            "strict": self.ok("strict"), "flexible": self.ok("flexible"),
            "last_integer": self.ok("last-integer")}
        data["extracted"] = None if self.verdict is None else {
            "strict": self.verdict.strict, "flexible": self.verdict.flexible,
            "last_integer": self.verdict.last_integer}
        return data


@dataclass(frozen=True)
class Endpoint:
    """Where the requests go and as whom."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)


class Garbage(ValueError):
    """A reply that is not the API's shape."""


def _field(data: Any, *path: str | int) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            raise Garbage(f"no {'.'.join(map(str, path))} in the reply") from None
    return data


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Garbage(f"{what} is not text")
    return value[:MAX_REPLY]


def request_body(protocol: Protocol, model: str, block: str, question: str
                 ) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of one question under `protocol`."""
    common: dict[str, Any] = {"model": model, "max_tokens": protocol.max_tokens,
                              "temperature": protocol.temperature}
    if protocol.seed is not None:
        common["seed"] = protocol.seed
    if protocol.stop:
        common["stop"] = list(protocol.stop)
    if protocol.endpoint == "completions":
        return "/v1/completions", {**common, "prompt": completion_prompt(block, question)}
    body = {**common, "messages": chat_messages(protocol, question)}
    if protocol.thinking:
        body["chat_template_kwargs"] = {"enable_thinking": True}
    return "/v1/chat/completions", body


def ask(session: Any, where: Endpoint, protocol: Protocol, block: str, index: int,
        problem: Problem, timeout_s: float) -> Answer:
    """One question asked and judged; an HTTP error, a timeout or a reply that is not
    the API's shape is the answer's `error`, never an exception."""
    import requests

    path, body = request_body(protocol, where.model, block, problem.question)
    text = body.get("prompt") or json.dumps(body["messages"])
    base = Answer(index, prompt_id(text), problem.question, problem.target)
    headers = {"Authorization": f"Bearer {where.api_key}"} if where.api_key else {}
    started = time.monotonic()
    try:
        response = session.post(f"{where.base_url}{path}", json=body, headers=headers,
                                timeout=(10, timeout_s))
        seconds = time.monotonic() - started
        if response.status_code != 200:
            detail = one_line(response.text, 120)
            return _failed(base, f"HTTP {response.status_code}: {detail}", seconds)
        data = json.loads(response.text)  # not .json(): its error is a RequestException
        choice = _field(data, "choices", 0)
        if protocol.endpoint == "completions":
            content, reasoning = _text(_field(choice, "text"), "text"), ""
        else:
            message = _field(choice, "message")
            content = _text(_field(message, "content"), "content")
            reasoning = _text(message.get("reasoning") or message.get("reasoning_content"),
                              "reasoning")
        usage = data.get("usage") if isinstance(data, dict) else None
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    except requests.Timeout:
        return _failed(base, f"no reply within {timeout_s:g} s", time.monotonic() - started)
    except requests.RequestException as err:
        return _failed(base, f"{err.__class__.__name__}: {one_line(str(err), 120)}",
                       time.monotonic() - started)
    except (ValueError, AttributeError) as err:  # not JSON (Garbage too)
        return _failed(base, f"garbage reply: {one_line(str(err), 120)}",
                       time.monotonic() - started)
    return Answer(base.index, base.prompt_id, base.question, base.target, content, reasoning,
                  finish if isinstance(finish, str) else None, judge(content, problem),
                  format_problem(content, reasoning, protocol), None, seconds,
                  tokens if isinstance(tokens, int) else None)


# --- the server's context ----------------------------------------------------------------

MIN_ROOM = 64  # generated tokens below which a question cannot be answered at all
TEMPLATE_ROOM = 64  # a chat template's markup around the question, when not counted


PROBES = 8  # prompts the server is asked to count: the longest by characters
FIRST_COUNT_TIMEOUT_S = 60.0  # the first count may wake a sleeping group member


def prompt_tokens(where: Endpoint, path: str, body: dict[str, Any],
                  timeout_s: float = 10.0) -> int | None:
    """The prompt's tokens as the server counts them (vLLM's POST /tokenize, chat
    template included for a chat request); None when the server does not say."""
    import requests

    ask_for: dict[str, Any] = {"model": where.model}
    if path.endswith("/completions") and "prompt" in body:
        ask_for["prompt"] = body["prompt"]
    else:
        ask_for |= {"messages": body["messages"], "add_generation_prompt": True,
                    "chat_template_kwargs": body.get("chat_template_kwargs") or {}}
    headers = {"Authorization": f"Bearer {where.api_key}"} if where.api_key else {}
    try:
        reply = requests.post(f"{where.base_url}/tokenize", json=ask_for, headers=headers,
                              timeout=timeout_s)
        count = reply.json().get("count") if reply.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 \
        else None


@dataclass(frozen=True)
class PromptSize:
    """The most tokens a prompt of the run takes, and how that was found."""

    tokens: int
    counted_by: str  # "server" (its /tokenize, with a margin) or "characters" (a bound)

    def words(self) -> str:
        return (f"up to {self.tokens:,} tokens (the server's count of the {PROBES} longest, "
                "with a margin)" if self.counted_by == "server" else
                f"at most {self.tokens:,} tokens (their characters: the server did not count)")


def fit_to_context(protocol: Protocol, context: int | None, prompts: PromptSize
                   ) -> tuple[Protocol, str | None]:
    """The protocol with max_tokens cut to what the server's context leaves after the
    longest prompt (vLLM answers HTTP 400 to a request whose prompt and max_tokens pass
    --max-model-len, so every question would fail), and a note saying so; unchanged
    when it fits or the context is not known."""
    from dataclasses import replace

    if context is None or prompts.tokens + protocol.max_tokens <= context:
        return protocol, None
    room = context - prompts.tokens
    if room < MIN_ROOM:
        raise UsageError(f"The server's --max-model-len {context:,} leaves {max(room, 0)} "
                         f"tokens to answer after the prompts ({prompts.words()}): serve a "
                         f"longer context for {protocol.name}.")
    return replace(protocol, max_tokens=room), (
        f"max_tokens {room:,}, not {protocol.max_tokens:,}: the server's --max-model-len "
        f"is {context:,} and the prompts take {prompts.words()}")


def prompt_size(where: Endpoint, protocol: Protocol, block: str,
                questions: Sequence[Problem], context: int) -> PromptSize:
    """The most tokens a prompt of the run takes. Their characters bound it (GSM8K is
    ASCII: a token holds at least one character); where that bound leaves the protocol's
    max_tokens room, nothing is asked. Else the server counts the PROBES longest prompts
    (a shorter one can hold more tokens: hence several, and a margin)."""
    def text_of(body: dict[str, Any]) -> str:
        return str(body.get("prompt") or "".join(m["content"] for m in body["messages"]))

    bodies = [request_body(protocol, where.model, block, p.question) for p in questions]
    longest = sorted(bodies, key=lambda pb: len(text_of(pb[1])), reverse=True)[:PROBES]
    chars = len(text_of(longest[0][1])) + (
        0 if protocol.endpoint == "completions" else TEMPLATE_ROOM)
    if chars + protocol.max_tokens <= context:
        return PromptSize(chars, "characters")
    counts: list[int] = []
    for n, (path, body) in enumerate(longest):
        counted = prompt_tokens(where, path, body, FIRST_COUNT_TIMEOUT_S if n == 0 else 10.0)
        if counted is None:
            return PromptSize(chars, "characters")
        counts.append(counted)
    most = max(counts)
    return PromptSize(min(chars, most + 16 + most // 20), "server")


def server_context(base_url: str, api_key: str | None, model: str) -> int | None:
    """The served model's context (max_model_len in vLLM's GET /v1/models), None when
    the server does not say."""
    import requests

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        data = requests.get(f"{base_url}/v1/models", headers=headers, timeout=5).json()
        cards = data.get("data") if isinstance(data, dict) else None
    except (requests.RequestException, ValueError):
        return None
    for card in cards if isinstance(cards, list) else []:
        if isinstance(card, dict) and card.get("id") == model:
            value = card.get("max_model_len")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _failed(base: Answer, error: str, seconds: float) -> Answer:
    return Answer(base.index, base.prompt_id, base.question, base.target, error=error,
                  seconds=seconds)


# --- the run ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Asked:
    answers: list[Answer]  # in question order: every question sent and back
    stop_reason: str | None  # why questions were left unsent
    status: Status


def ask_all(where: Endpoint, protocol: Protocol, block: str,
            questions: Sequence[tuple[int, Problem]], concurrency: int, timeout_s: float,
            on_answer: Callable[[Answer], None] = lambda _: None) -> Asked:
    """Every question, `concurrency` at a time. After MAX_FAILURES_IN_A_ROW failed
    requests in a row no more are sent; Ctrl-C stops at once (the workers are daemon
    threads: a request in flight does not hold the process). What came back is kept
    either way."""
    import queue

    import requests

    jobs: queue.SimpleQueue[tuple[int, Problem]] = queue.SimpleQueue()
    for item in questions:
        jobs.put(item)
    results: queue.SimpleQueue[Answer | BaseException] = queue.SimpleQueue()
    lock = threading.Lock()
    stop = threading.Event()
    state: dict[str, Any] = {"failures": 0, "last": None}

    def worker() -> None:
        session = requests.Session()
        try:
            while not stop.is_set():
                try:
                    index, problem = jobs.get_nowait()
                except queue.Empty:
                    return
                answer = ask(session, where, protocol, block, index, problem, timeout_s)
                with lock:
                    state["failures"] = 0 if answer.answered else state["failures"] + 1
                    if not answer.answered:
                        state["last"] = answer.error
                    if state["failures"] >= MAX_FAILURES_IN_A_ROW:
                        stop.set()
                results.put(answer)
        except BaseException as err:  # a bug: raised again in the caller's thread
            results.put(err)
        finally:
            session.close()

    threads = [threading.Thread(target=worker, daemon=True, name=f"eval-{n}")
               for n in range(max(1, min(concurrency, len(questions))))]
    for thread in threads:
        thread.start()
    done: list[Answer] = []
    status: Status = "complete"
    try:
        while len(done) < len(questions):
            try:
                got = results.get(timeout=0.1)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and results.empty():
                    break
                continue
            if isinstance(got, BaseException):
                raise got
            done.append(got)
            on_answer(got)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        stop.set()
    done.sort(key=lambda a: a.index)
    unsent = len(questions) - len(done)
    failed = sum(not a.answered for a in done)
    reason = None
    if status == "interrupted":
        reason = "interrupted"
    elif unsent:
        reason = (f"the server stopped answering: {MAX_FAILURES_IN_A_ROW} requests failed "
                  f"in a row, the last with {state['last']}")
    elif failed:
        first = next(a for a in done if not a.answered)
        reason = f"{failed} request(s) failed, the first with {first.error}"
    if status == "complete" and (unsent or failed):
        status = "partial"
    return Asked(done, reason, status)


def select(count: int, limit: int | None, seed: int) -> list[int]:
    """The test questions asked: all of them, or a sample of `limit` drawn with `seed`
    (sorted: the same sample is the same file order)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(random.Random(seed).sample(range(count), limit))


def counts(answers: Sequence[Answer]) -> dict[str, int]:
    scored = [a for a in answers if a.answered]
    return {m: sum(a.ok(m) for a in scored) for m in METRICS}


# --- references ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Chosen:
    """What this run is compared with, and the data set that follows from it."""

    targets: tuple[Target, ...]
    dataset: str
    notes: tuple[str, ...] = ()


def _family(model: str) -> str | None:
    """The recipe's model of a catalog checkpoint (zai-org/GLM-4.7 for -FP8)."""
    from glmkit.knowledge.catalog import CATALOG

    spec = CATALOG.get(model)
    return spec.recipe.model.model_id if spec and spec.recipe else None


def choose_references(*, model: str, tiny: bool, request: EvalRequest, baselines_dir: Path,
                      references: Sequence[Reference]) -> Chosen:
    """The references of this run: `--against NAME` (a baseline saved for model NAME, a
    published row's id, or the rows about model NAME), else this model's saved baseline
    and published rows. The data set follows the reference unless --dataset is given."""
    protocol = request.protocol.name
    default = request.dataset or (TINY if tiny else GSM8K)
    if request.against is not None:
        name = request.against
        saved = [b for b in baselines_of(baselines_dir, name) if b.protocol == protocol]
        if saved:
            pick = next((b for b in saved if b.dataset == request.dataset), saved[0])
            path = baselines_dir / _baseline_file(pick)
            return Chosen((baseline_target(pick, path),), request.dataset or pick.dataset)
        rows = [r for r in references if r.id == name] or applicable(references, name, None)
        if not rows:
            known = ", ".join(r.id for r in references)
            raise UsageError(f"--against {name[:60]!r}: no baseline saved here for that "
                             f"model with {protocol}, and no published reference of that "
                             f"name or model ({known}).")
        row = next((r for r in rows if r.protocol == protocol), rows[0])
        return Chosen((reference_target(row),), request.dataset or row.dataset)
    targets: list[Target] = []
    saved = [b for b in baselines_of(baselines_dir, model)
             if b.protocol == protocol and b.dataset == default]
    if saved:
        targets.append(baseline_target(saved[0], baselines_dir / _baseline_file(saved[0])))
    rows = [r for r in applicable(references, model, _family(model)) if r.dataset == default]
    same = [r for r in rows if r.protocol == protocol]
    if same:
        targets.append(reference_target(same[0]))
    elif rows:
        targets.append(reference_target(rows[0]))  # shown as not compared, with why
    notes = () if targets else (
        f"no reference for {one_line(model, 80)} with {protocol} on {default}: "
        "`--save-baseline` makes this run the one later runs compare with",)
    return Chosen(tuple(targets), default, notes)


def _baseline_file(baseline: BaselineDoc) -> str:
    from glmkit.measure.eval_gate import baseline_name

    return baseline_name(baseline.model, baseline.protocol, baseline.dataset)


# --- the report ---------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalReport:
    path: Path
    protocol: Protocol
    dataset: str
    selected: int  # questions chosen
    sample: bool
    answers: list[Answer]
    status: Status
    stop_reason: str | None
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...] = ()
    baseline: Path | None = None
    seconds: float = 0.0

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def answered(self) -> int:
        return sum(a.answered for a in self.answers)

    @property
    def correct(self) -> dict[str, int]:
        return counts(self.answers)

    def summary_line(self) -> str:
        """Score, interval, n, and each reference's verdict: one line."""
        n = self.answered
        if n == 0:
            head = f"{self.dataset} {self.protocol.name}: no answers"
        else:
            flex, strict = self.correct["flexible"], self.correct["strict"]
            low, high = wilson(flex, n)
            head = (f"{self.dataset} {self.protocol.name}: flexible {flex / n:.3f} (95% CI "
                    f"{low:.3f}-{high:.3f}), strict {strict / n:.3f}, n={n}")
            if self.sample:
                head += f" (sample of {self.selected})"
        if self.status != "complete":
            head += f" [{self.status.upper()}: {n} of {self.selected} answered]"
        tail = [o.line() for o in self.outcomes]
        if not tail and self.baseline is None:
            tail = list(self.notes[:1])
        if self.baseline is not None:
            tail.append(f"saved as the baseline ({self.baseline})")
        tail += [n for n in self.notes if n.startswith(("not saved as a baseline",
                                                         "max_tokens "))]
        tail = list(dict.fromkeys(tail))  # a note shown once
        return " · ".join([head, *tail, f"run {self.run_id}"])

    def check(self) -> None:
        """Raise after the line is shown: a partial run, then a failed gate."""
        if self.status == "interrupted":
            raise Interrupted(f"interrupted: {self.answered} of {self.selected} questions "
                              f"kept in {self.path}")
        if self.status == "partial":
            raise BenchFailed(f"eval partial: {self.answered} of {self.selected} questions "
                              f"answered ({self.stop_reason}); kept in {self.path}")
        failed = [o for o in self.outcomes if o.failed]
        if failed:
            o, t = failed[0], failed[0].target
            what = f"threshold {t.value:g}" if t.kind == "threshold" else \
                f"{t.value:.3f} measured on {t.n}"
            raise AccuracyFailed(f"{self.dataset} {t.metric} {o.score:.3f} on {self.answered}"
                                 f" questions is {t.value - o.score:.3f} below {t.name}'s "
                                 f"{what} ({o.detail}); source: {t.source}")


# --- the whole thing ----------------------------------------------------------------------

@dataclass(frozen=True)
class Provenance:
    """What served the answers, for the run's metadata and a baseline's."""

    model: str
    model_ref: str = ""
    vendor: str = ""
    image: str = ""
    image_digest: str | None = None
    vllm_version: str | None = None
    serve_args: tuple[str, ...] = ()
    hardware: dict[str, Any] = field(default_factory=dict)
    glmkit_commit: str | None = None
    quantization: str | None = None

    def facts(self) -> dict[str, str | None]:
        """What eval_gate compares with a reference's."""
        gpus = self.hardware.get("gpus") or []
        hardware = ", ".join(str(g.get("name")) for g in gpus if isinstance(g, dict)) or \
            str(self.hardware.get("description") or "") or None
        return {"hardware": hardware, "engine_version": self.vllm_version,
                "quantization": self.quantization,
                "image": self.image_digest or self.image or None,
                "serve flags": " ".join(self.serve_args)}


def new_run_folder(results_dir: Path, label: str) -> Path:
    parent = results_dir / EVAL_DIR
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = parent / (f"{stamp}-{label}" if n == 0 else f"{stamp}-{label}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UsageError(f"Could not create a new eval folder under {parent}.")


def evaluate(request: EvalRequest, where: Endpoint, provenance: Provenance, *, tiny: bool,
             results_dir: Path, hf_cache: Path, console: Console | None = None,
             references: Sequence[Reference] | None = None,
             load: Callable[[str, Path], EvalSet] = load_set,
             concurrency: int = DEFAULT_CONCURRENCY, context: int | None = None
             ) -> EvalReport:
    """Ask the questions, store every answer, gate the score; returns the report (its
    `check()` raises on a partial run or a failed gate). `context`: the server's
    max_model_len, which max_tokens is cut to fit (the cut is recorded and shown)."""
    from dataclasses import replace
    concurrency = request.concurrency or concurrency
    baselines_dir = results_dir / EVAL_DIR / BASELINES
    chosen = choose_references(model=provenance.model, tiny=tiny, request=request,
                               baselines_dir=baselines_dir,
                               references=load_references() if references is None
                               else references)
    data = load(chosen.dataset, hf_cache)
    if request.limit is not None and request.limit > len(data.test):
        raise UsageError(f"--limit {request.limit}: {data.name} has {len(data.test):,} test "
                         "questions.")
    indices = select(len(data.test), request.limit, request.seed)
    sample = len(indices) < len(data.test)
    block = fewshot_block(data.train, request.protocol.shots)
    fitted: str | None = None
    prompts: PromptSize | None = None
    if context is not None:
        prompts = prompt_size(where, request.protocol, block,
                              [data.test[i] for i in indices], context)
        protocol, fitted = fit_to_context(request.protocol, context, prompts)
        request = replace(request, protocol=protocol)
    notes = (*chosen.notes, *([fitted] if fitted else []))
    label = request.label or _label(provenance.model, request.protocol.name, data.name)
    folder = new_run_folder(results_dir, label)
    write_json_once(folder / META, {
        "version": META_VERSION, "kind": "eval", "label": label,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "glmkit_version": __version__,
        **asdict(provenance),
        "request_model": where.model, "protocol": request.protocol.to_json(),
        "dataset": {"name": data.name, "revision": data.revision, "source": data.source,
                    "test_questions": len(data.test)},
        "selection": {"limit": request.limit, "seed": request.seed, "indices": indices},
        "fewshot_id": prompt_id(block), "concurrency": concurrency,
        "server_context": context, "notes": list(notes),
        "prompt_tokens": asdict(prompts) if prompts else None,
        "references": [t.name for t in chosen.targets]})
    atomic_write(folder / FEWSHOT, block)
    started = time.monotonic()
    asked = _ask_with_progress(where, request, block, [(i, data.test[i]) for i in indices],
                               concurrency, console)
    seconds = time.monotonic() - started
    atomic_write(folder / ANSWERS, "".join(json.dumps(a.to_json(), ensure_ascii=False) + "\n"
                                           for a in asked.answers))
    found = counts(asked.answers)
    answered = sum(a.answered for a in asked.answers)
    outcomes: tuple[Outcome, ...] = ()
    if answered:
        score = RunScore(answered, found, request.protocol.name, data.name,
                         sample or asked.status != "complete", provenance.facts())
        outcomes = tuple(compare(score, t) for t in chosen.targets)
    report = EvalReport(folder, request.protocol, data.name, len(indices), sample,
                        asked.answers, asked.status, asked.stop_reason, outcomes,
                        notes, None, seconds)
    if request.save_baseline:
        report = _save(report, provenance, baselines_dir)
    write_json_once(folder / SUMMARY, {
        "status": asked.status, "stop_reason": asked.stop_reason, "selected": len(indices),
        "answered": answered, "correct": found, "seconds": round(seconds, 2),
        "gate": [{"reference": o.target.name, "source": o.target.source,
                  "verdict": o.verdict, "line": o.line()} for o in outcomes],
        "baseline": str(report.baseline) if report.baseline else None})
    return report


def _save(report: EvalReport, provenance: Provenance, folder: Path) -> EvalReport:
    from dataclasses import replace

    cut = next((n.split(":")[0] for n in report.notes if n.startswith("max_tokens ")), None)
    if report.status != "complete" or any(o.failed for o in report.outcomes) or cut:
        # A cut run answered under another protocol than its name says: as a baseline
        # it would gate full runs with a score they were not asked for.
        why = f"the run is {report.status}" if report.status != "complete" else \
            f"its {cut} (the server's context)" if cut else "it failed the gate"
        return replace(report, notes=(*report.notes, f"not saved as a baseline: {why}"))
    found = report.correct
    doc = BaselineDoc(version=1, model=provenance.model, protocol=report.protocol.name,
                      dataset=report.dataset, n=report.answered,
                      correct=Correct(strict=found["strict"], flexible=found["flexible"],
                                      last_integer=found["last-integer"]),
                      run_id=report.run_id, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      hardware=str(provenance.facts()["hardware"] or "")[:200],
                      image=provenance.image[:300], image_digest=provenance.image_digest,
                      vllm_version=provenance.vllm_version,
                      serve_args=list(provenance.serve_args)[:512])
    path = save_baseline(folder, doc)
    return replace(report, baseline=path,
                   notes=(*report.notes, f"saved as the baseline of "
                          f"{one_line(provenance.model, 80)}: {path}"))


def _label(model: str, protocol: str, dataset: str) -> str:
    import re

    text = f"{model.rsplit('/', 1)[-1]}-{dataset}-{protocol}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:100] or "eval"


def _ask_with_progress(where: Endpoint, request: EvalRequest, block: str,
                       questions: list[tuple[int, Problem]], concurrency: int,
                       console: Console | None) -> Asked:
    if console is None or not console.is_terminal:  # a log gets the summary line only
        return ask_all(where, request.protocol, block, questions, concurrency,
                       request.timeout_s)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    right = [0, 0]

    with progress:
        task = progress.add_task(f"{request.protocol.name}", total=len(questions))

        def seen(answer: Answer) -> None:
            right[0] += answer.ok("flexible")
            right[1] += answer.answered
            progress.update(task, advance=1, description=(
                f"{request.protocol.name}: flexible {right[0] / max(right[1], 1):.3f}"))

        return ask_all(where, request.protocol, block, questions, concurrency,
                       request.timeout_s, seen)


def vllm_version(base_url: str, api_key: str | None) -> str | None:
    """The server's vLLM version (GET /version), None when it does not say."""
    import requests

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        data = requests.get(f"{base_url}/version", headers=headers, timeout=5).json()
    except (requests.RequestException, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return one_line(version, 80) if isinstance(version, str) else None


def served_names(serve_args: Sequence[str], served: str) -> list[str]:
    """The names the server answers to: the served model and --served-model-name's."""
    found = [served]
    args = list(serve_args)
    for i, word in enumerate(args):
        if word.startswith("--served-model-name="):
            found.append(word.split("=", 1)[1])
        elif word == "--served-model-name":
            for name in args[i + 1:]:
                if name.startswith("-"):
                    break
                found.append(name)
    return list(dict.fromkeys(found))


def concurrency_for(serve_args: Sequence[str]) -> int:
    """DEFAULT_CONCURRENCY, or fewer when the server schedules fewer (--max-num-seqs)."""
    from glmkit.vllm_args import flag_value

    seqs = flag_value(tuple(serve_args), "--max-num-seqs")
    return min(DEFAULT_CONCURRENCY, int(seqs)) if seqs and seqs.isdigit() and int(seqs) > 0 \
        else DEFAULT_CONCURRENCY


def eval_server(request: EvalRequest, results_dir: Path, repo_root: Path, hw: Any,
                hf_cache: Path, console: Console) -> EvalReport:
    """`invoke eval`: the project's running server (one server, a cluster's head or a
    pd_cluster's router), its key found as `check` and `bench` find it."""
    from glmkit.errors import mask_argv
    from glmkit.knowledge.catalog import CATALOG
    from glmkit.measure.results import HardwareMeta, read_run_facts
    from glmkit.run.server import running_server

    _, target = running_server(request.project)
    names = served_names(target.serve_args, target.served_model)
    model = request.model or target.served_model
    if model not in names:
        raise UsageError(f"--model {model[:60]!r}: {request.project} answers to "
                         f"{', '.join(n[:60] for n in names[:5])}.")
    facts = read_run_facts(target, repo_root)
    spec = CATALOG.get(target.served_model)
    provenance = Provenance(
        model=target.served_model, model_ref=target.model_ref, vendor=target.vendor,
        image=target.image, image_digest=facts.image_digest,
        vllm_version=vllm_version(target.base_url, target.api_key),
        # As shown anywhere: a secret flag's value masked (an API key is never a result).
        serve_args=tuple(mask_argv(target.serve_args, [target.api_key])),
        hardware=HardwareMeta.of(hw).to_json(),
        glmkit_commit=facts.glmkit_commit, quantization=spec.precision if spec else None)
    concurrency = request.concurrency or concurrency_for(target.serve_args)
    return evaluate(request, Endpoint(target.base_url, model, target.api_key), provenance,
                    tiny=target.facts.tiny == "text", results_dir=results_dir,
                    hf_cache=hf_cache, console=console, concurrency=concurrency,
                    context=server_context(target.base_url, target.api_key, model))


def run_eval(request: EvalRequest, results_dir: Path, repo_root: Path,
             env: Mapping[str, str], hf_cache_setting: str | None,
             console: Console) -> EvalReport:
    """`invoke eval` and `invoke up --eval`: this host's hardware and HF cache, then
    `eval_server`."""
    from glmkit.host import hardware
    from glmkit.paths import hf_cache

    return eval_server(request, results_dir, repo_root, hardware.detect(env),
                       hf_cache(env, hf_cache_setting), console)
