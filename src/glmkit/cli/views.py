"""What the tasks print: the library's data as rich tables and lines, nothing computed.

Text from outside (model ids, recipes, labels, paths, error messages, container output)
is printed as plain text, never read as rich markup: a `[/x]` in a vendor name must not
crash the print, and a `[link=...]` in a synced recipe must not become a link. Styles
come only from this module's own literals (`Text` spans), never from the data.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import astuple, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from glmkit.errors import GlmkitError, ServerFailed, mask_argv
from glmkit.knowledge.catalog import ModelSpec
from glmkit.knowledge.recipes import RecipeBook, RecipeChange
from glmkit.measure.agentic import AgenticReport
from glmkit.measure.eval_runs import AccuracyReport
from glmkit.measure.evaluate import EvalReport
from glmkit.measure.moe_tune import TuneMoeResult
from glmkit.measure.results import Series, reference_names
from glmkit.measure.tune import TuneReport
from glmkit.plan.advice import Advice
from glmkit.run.agents import AgentSetup
from glmkit.run.api_check import ApiSummary, CheckReport
from glmkit.run.deploy import Deployment, UpResult
from glmkit.run.engine import ServerStatus
from glmkit.run.tool_check import CaseResult
from glmkit.text import printable


class SafeConsole(Console):
    """A console that shows control characters in what it renders as '?'
    (glmkit.text.printable): whatever a table cell, note or log line holds, no escape
    sequence reaches the terminal. Styles are kept: they are the segments' styles, not
    their text."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None
               ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and segment.text != printable(segment.text):
                segment = Segment(printable(segment.text), segment.style)
            yield segment


def console(stderr: bool = False) -> Console:
    # Piped output (CI logs, tests) gets wide tables instead of truncated cells.
    return SafeConsole(stderr=stderr, width=None if sys.stdout.isatty() else 160)


def say(text: object) -> None:
    """One plain line on standard output, through the console (never read as markup)."""
    console().print(str(text), markup=False, highlight=False, soft_wrap=True)


def _text(value: Any) -> Text:
    """A cell or line from data: its characters as they are, no markup."""
    return value if isinstance(value, Text) else Text(str(value))


def _add_row(table: Table, *cells: Any, style: str | None = None) -> None:
    # Table.add_row renders str cells as markup; Text cells are shown as written.
    table.add_row(*(_text(cell) for cell in cells), style=style)


def print_error(err: GlmkitError) -> int:
    """The error in one line on stderr (after a crashed server's log tail); its exit code."""
    out = console(stderr=True)
    if isinstance(err, ServerFailed) and err.log_tail:
        out.rule("container log (last lines)")
        out.print(err.log_tail, markup=False, highlight=False)
        out.rule()
    out.print(Text.assemble(("error:", "bold red"), " ", str(err)), highlight=False,
              soft_wrap=True)
    return err.exit_code


def print_notes(out: Console, notes: Iterable[str], kind: str = "note") -> None:
    colour = "cyan" if kind == "note" else "yellow"
    for note in notes:
        out.print(Text.assemble((f"{kind}:", colour), " ", str(note)), highlight=False)


def _shown(s: Series) -> Series:
    """A run with its id and label escaped for the report's tables, which read markup."""
    return replace(s, run_id=escape(s.run_id), meta=replace(s.meta, label=escape(s.label)))


def print_report(out: Console, series: list[Series], folder: Path, *, compare: bool = False,
                 csv: bool = False, notes: Iterable[str] = ()) -> None:
    """Results table (and B/A ratios), plots and CSV into `folder`; notes (runs or files
    skipped) first."""
    from glmkit.measure.report import (
        compare_table,
        metrics_table,
        results_table,
        write_csv,
        write_metrics_plot,
        write_plots,
    )

    print_notes(out, notes, "skipped")
    shown = [_shown(s) for s in series]
    out.print(results_table(shown))
    if (server := metrics_table(shown)) is not None:
        out.print(server)
        out.print(f"server metrics: {write_metrics_plot(series, folder / 'metrics.png')}",
                  highlight=False, markup=False)
    if compare:
        out.print(compare_table(shown))
    if any(s.points for s in series):
        out.print(f"plots: {write_plots(series, folder / 'report.png')}", highlight=False,
                  markup=False)
    if csv:
        out.print(f"csv:   {write_csv(series, folder / 'report.csv')}", highlight=False,
                  markup=False)
        out.print(Text(f"reference runs: {', '.join('ref:' + n for n in reference_names())}",
                       style="dim"))
    else:
        out.print(f"saved {folder}", highlight=False, markup=False)


def models_table(models: Iterable[ModelSpec]) -> Table:
    table = Table()
    for column in ("model", "family", "precision", "params (active)", "needs GB", "context",
                   "tool / reasoning", "MTP", "vision", "min vLLM", "source"):
        table.add_column(column)
    for m in models:
        _add_row(table, m.id, m.family, m.precision,
                      f"{m.total_params_b:g}B ({m.active_params_b:g}B)",
                      f"{m.vram_minimum_gb:g}", str(m.max_context),
                      f"{m.tool_parser or '-'} / {m.reasoning_parser or '-'}",
                      "yes" if m.has_mtp else "-", "yes" if m.vision else "-", m.min_vllm,
                      m.source)
    return table


def recipes_table(book: RecipeBook) -> Table:
    table = Table()
    for column in ("recipe", "checkpoints", "min vLLM", "strategies", "source"):
        table.add_column(column)
    for key, recipe in book.recipes.items():
        _add_row(table, key, ", ".join(recipe.variant_model_id(v) for v in recipe.variants),
                      recipe.min_vllm, ", ".join(recipe.compatible_strategies),
                      recipe.source.describe())
    return table


def recipe_diff_table(changes: Iterable[RecipeChange]) -> Table:
    table = Table(title="synced recipes against the built-in data")
    for column in ("recipe", "change", "field", "built-in", "synced"):
        table.add_column(column)
    for ch in changes:
        _add_row(table, ch.recipe, ch.kind, ch.path, "" if ch.builtin is None else
                      str(ch.builtin), "" if ch.synced is None else str(ch.synced))
    return table


def as_json_text(rows: Iterable[Any]) -> str:
    """Dataclass rows as a JSON array (`invoke status --json`)."""
    import dataclasses
    import json

    return json.dumps([dataclasses.asdict(row) for row in rows], indent=2)


def print_status(out: Console, rows: list[ServerStatus], *, as_json: bool) -> None:
    if as_json:
        print(as_json_text(rows))
    else:
        out.print(status_table(rows) if rows else "no glmkit servers")


def print_render(out: Console, deployment: Deployment, paths: list[Path]) -> None:
    lines = deployment.describe()
    for line in lines:
        out.print(line, highlight=False, markup=False)
    for path in paths:
        say(path)


# What a user copies or reads at a glance (`--project` takes the project, `--model` the
# model): whole on one line however narrow the output; the image and digest fold instead.
WHOLE = {"project", "model", "url", "state", "api"}


def status_table(rows: list[ServerStatus]) -> Table:
    table = Table()
    for field in fields(ServerStatus):
        whole = field.name in WHOLE
        widest = max((len(str(getattr(row, field.name))) for row in rows), default=0)
        table.add_column(field.name.replace("_", " "), overflow="fold", no_wrap=whole,
                         min_width=min(widest, 80) if whole else None)
    for row in rows:
        _add_row(table, *astuple(row))
    return table


def settings_table(values: Mapping[str, Any], sources: Mapping[str, str]) -> Table:
    table = Table()
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for name, source in sources.items():
        value = values[name]
        if name == "extra_args":  # `-- --api-key KEY` is refused later; never shown
            value = tuple(mask_argv(value))
        _add_row(table, name, repr(value), source)
    return table


def advice_table(advice: Advice) -> Table:
    table = Table(title=Text(advice.title, style="table.title"), show_header=False)
    table.add_column("")
    table.add_column("")
    for label, text in advice.rows:
        _add_row(table, label, text)
    return table


def print_advice(out: Console, *advices: Advice) -> None:
    """Each plan's table (a model group's: each member's, then the group's)."""
    for advice in advices:
        out.print(advice_table(advice))
        if advice.multinode:
            out.print(advice.multinode, highlight=False, markup=False)
        for line in advice.assumptions:
            out.print(Text(f"assumes: {line}", style="dim"), highlight=False)


def check_table(results: Iterable[CaseResult], title: str = "tool-call conformance") -> Table:
    table = Table(title=title)
    for column in ("api", "case", "tool_choice", "stream", "thinking", "result"):
        table.add_column(column)
    for r in results:
        auth = r.tool_choice == "-"  # an authentication row: no stream, no thinking
        _add_row(table, r.api, r.case, r.tool_choice,
                 "-" if auth else "yes" if r.stream else "no",
                 "-" if auth else "on" if r.thinking else "off",
                 Text("pass", style="green") if r.ok else
                 Text.assemble(("FAIL", "red"), " ", str(r.detail)))
    return table


def check_summary(summary: ApiSummary) -> Text:
    """One API's line: passed or failed, how many requests, how long."""
    verdict = Text("passed", style="green") if not summary.failed else \
        Text("FAILED", style="red")
    counts = f"{summary.requests} requests" if not summary.failed else \
        f"{summary.failed} of {summary.requests} requests"
    line = Text.assemble(f"{summary.api:<10} ", verdict, f"  {counts} in "
                         f"{summary.seconds:.1f} s")
    if summary.not_run:
        line.append(f", {summary.not_run} not sent (the parser was proven wrong)")
    return line


def print_check(out: Console, report: CheckReport, verbose: bool = False) -> None:
    """A line per API and the failing rows; every row with `verbose` (and in the file)."""
    for summary in report.summaries:
        out.print(check_summary(summary), highlight=False)
    if verbose:
        out.print(check_table(report.results))
    elif report.failed:
        out.print(check_table(report.failed, title="failing cases"))
    out.print(Text(f"saved {report.path}" + ("" if verbose else
                                             " (every case: invoke check --verbose)")),
              highlight=False)


def print_tune(out: Console, report: TuneReport) -> None:
    table = Table(title=Text(f"invoke tune {report.folder.name}: goodput against the recipe "
                             "default", style="table.title"))
    for column in ("candidate", "goodput req/s", "vs default", "out tok/s", "TTFT p99",
                   "TPOT p99", "accuracy", "run"):
        table.add_column(column)
    for row in report.rows:
        ratio = report.ratio(row)
        accuracy = f"{row.accuracy:.2f} of {row.accuracy_n}" if isinstance(
            row.accuracy, float) and row.accuracy_n else "-"
        cells = [row.candidate, *(f"{v:.2f}" if v is not None else "-" for v in
                                  (row.goodput, ratio, row.throughput, row.ttft_p99,
                                   row.tpot_p99)), accuracy, row.error or row.run_id or "-"]
        style = "green" if row.candidate == report.winner else ("red" if row.error else None)
        _add_row(table, *cells, style=style)
    out.print(table)
    for name in report.less_accurate:
        out.print(f"not recommended: {name} (accuracy significantly below the recipe "
                  "default's)", highlight=False, markup=False)
    if report.winner_file is not None:
        out.print(f"winner: {report.winner}; serve it with `invoke -f {report.winner_file} up`",
                  highlight=False, markup=False)


def print_up(out: Console, result: UpResult) -> None:
    """The health line, then the short tool-call check, one line per request."""
    where = (f"{result.nodes} nodes, every node running and a real request served; "
             if result.nodes > 1 else "")
    out.print(Text.assemble(("healthy", "green"), f" after {result.seconds:.1f} s: {where}"
                            f"{result.plan.base_url}/v1 serves "
                            f"{result.plan.served_model_name!r}"), highlight=False)
    for r in result.readiness:
        mark = Text("ok", style="green") if r.ok else Text.assemble(("FAILED", "red"), " ",
                                                                    str(r.detail))
        out.print(Text.assemble(f"tool call ({r.tool_choice}, "
                                f"{'streamed' if r.stream else 'not streamed'}, thinking "
                                f"{'on' if r.thinking else 'off'}): ", mark), highlight=False)
    print_agents(out, result.agents())


def print_agents(out: Console, setups: Iterable[AgentSetup]) -> None:
    """The environment each agent needs; the key by its variable's name only."""
    for setup in setups:
        out.print(Text(f"{setup.client}:", style="bold"), highlight=False)
        for line in setup.lines():
            out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


def print_agentic(out: Console, report: AgenticReport) -> None:
    """Per turn: prompt size, TTFT and cached tokens with prefix caching on and off."""
    spec = report.spec
    table = Table(title=f"agentic: {spec.sessions} sessions x {spec.turns} turns, "
                        f"{spec.output_len} tokens out; prefix caching on ({report.on}) vs "
                        f"off ({report.off})")
    for column in ("turn", "prompt tok", "TTFT on ms", "TTFT off ms", "off/on",
                   "cached on", "cached off", "TPOT on ms", "TPOT off ms"):
        table.add_column(column, justify="right")

    def f(value: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if value is None else fmt.format(value)

    for r in report.rows:
        _add_row(table, str(r.turn), f(r.prompt_tokens, "{:.0f}"), f(r.ttft_on_ms),
                 f(r.ttft_off_ms), f(r.ttft_ratio, "{:.2f}x"), f(r.cached_on, "{:.0f}"),
                 f(r.cached_off, "{:.0f}"), f(r.tpot_on_ms, "{:.2f}"),
                 f(r.tpot_off_ms, "{:.2f}"))
    out.print(table)
    out.print(f"saved {report.path}", highlight=False, markup=False)


def print_tune_moe(out: Console, result: TuneMoeResult) -> None:
    """What vLLM will use now, and the kernel against its baseline at decode sizes."""
    from glmkit.measure.moe_tuner import MIN_GAIN

    summary = result.summary
    baseline = "the config vLLM ships for it" if summary.baseline == "shipped" \
        else "vLLM's default tiles (it ships no config for it)"
    gains = ", ".join(f"{m} tokens {summary.batch_sizes[m].speedup:.2f}x"
                      for m in ("16", "64", "256") if m in summary.batch_sizes)
    shape = f"{summary.file} ({result.split.describe()}, {summary.dtype})"
    tried = f"{summary.candidates_tried} configs tried; kernel vs {baseline}: {gains}"
    line = {
        "installed": f"installed {shape} in the tuned folder of the vLLM cache volume "
                     f"({tried}). Run `invoke up` again to serve with it.",
        "removed": f"removed the earlier {shape}: it no longer beats {baseline} ({tried}); "
                   "vLLM uses that again from the next `invoke up`.",
        "none": f"installed nothing: no config beat {baseline} for {shape} by "
                f"{MIN_GAIN:.0%} twice ({tried}); vLLM keeps using it.",
    }[summary.installed]
    out.print(Text(line))


def eval_table(report: EvalReport) -> Table:
    """Every question: target, what each extraction read, the verdict, or why none."""
    table = Table(title=f"{report.dataset} {report.protocol.name}: {report.run_id}")
    for column in ("#", "target", "flexible", "strict", "verdict", "detail"):
        table.add_column(column)
    for a in report.answers:
        verdict = Text("right", style="green") if a.ok("flexible") else \
            Text("wrong", style="red") if a.answered else Text("no reply", style="yellow")
        _add_row(table, str(a.index), a.target,
                 a.verdict.flexible if a.verdict else "-", a.verdict.strict if a.verdict
                 else "-", verdict, a.error or a.format or a.finish_reason or "")
    return table


def print_eval(out: Console, report: EvalReport, verbose: bool = False) -> None:
    """One summary line; every question's row with `verbose`."""
    if verbose:
        out.print(eval_table(report))
        print_notes(out, report.notes)
    out.print(report.summary_line(), highlight=False, markup=False, soft_wrap=True)


def print_accuracy(out: Console, report: AccuracyReport) -> None:
    """`invoke report`'s accuracy section (`invoke eval` runs), and for two runs named,
    the questions whose verdict changed."""
    print_notes(out, report.notes, "skipped")
    if not report.runs:
        return
    table = Table(title="accuracy (invoke eval): GSM8K share right, flexible-extract")
    for column in ("run", "model", "data set", "protocol", "vLLM", "n", "flexible",
                   "strict", "status", "gate"):
        table.add_column(column)
    for run in report.runs:
        s, n = run.summary, run.summary.answered
        _add_row(table, run.run_id, run.meta.model, run.meta.dataset.name,
                 run.meta.protocol.name, run.meta.vllm_version or "-", str(n),
                 f"{s.correct.flexible / n:.3f}" if n else "-",
                 f"{s.correct.strict / n:.3f}" if n else "-", s.status,
                 ", ".join(g.verdict for g in s.gate) or "-")
    out.print(table)
    if report.changes is None:
        return
    a, b = report.runs
    diff = Table(title=f"{len(report.changes)} question(s) answered differently: "
                       f"{a.run_id} → {b.run_id}")
    for column in ("#", "target", "before", "after", "now"):
        diff.add_column(column)
    for c in report.changes:
        _add_row(diff, str(c.index), c.target, c.before, c.after,
                 Text("right", style="green") if c.now_right else Text("wrong", style="red"))
    out.print(diff)
