"""One settings table: each setting's type, default and help are declared once, on the
Settings field, and the tasks' options, `--no-X` switches and help derive from it."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

from glmkit.cli.help import BOOL_OPTIONS, HELP, SERVE_HELP
from glmkit.host.settings import Settings, help_text, user_settings


def test_every_setting_has_help_and_is_a_serve_option() -> None:
    names = {f.name for f in user_settings()}
    assert "extra_args_source" not in names
    for f in user_settings():
        assert f.metadata.get("help"), f"{f.name} has no help"
        # The words after `--`, and a group's models (--model repeated), are not options.
        if f.name not in ("extra_args", "models"):
            assert f.name in SERVE_HELP
    for task in ("render", "up", "config", "export", "tune"):
        assert set(SERVE_HELP) <= set(HELP[task])


def test_switches_are_the_bool_settings_with_their_off_form() -> None:
    assert set(BOOL_OPTIONS) == {f.name for f in fields(Settings) if f.type == "bool"}
    for name in BOOL_OPTIONS:
        assert f"no_{name}" in SERVE_HELP


def test_defaults_come_from_the_field_not_the_text() -> None:
    port = next(f for f in fields(Settings) if f.name == "port")
    assert help_text(port).endswith(f"(default {Settings().port})")
    for f in user_settings():
        # A literal default written into the help by hand would go stale.
        if isinstance(f.default, int | float) and not isinstance(f.default, bool):
            assert str(f.default) not in str(f.metadata["help"]), f.name


def test_no_task_option_default_is_written_twice() -> None:
    """#29: every task's options walked against the settings tables. A default lives in
    one table (Settings, or BenchOptions/TuneOptions/PlanOptions); the task's option is
    None (not given) and its help shows the table's default; the library's request
    applies the same table's default."""
    import dataclasses
    import inspect

    from invoke import Collection

    import tasks
    from glmkit.cli.help import HELP
    from glmkit.host.settings import TASK_OPTIONS, Settings, help_text
    from glmkit.measure.bench import BenchRequest
    from glmkit.measure.tune import TuneRequest
    from glmkit.plan.advice import PlanRequest

    # A literal default in a task's signature is a second copy: None (not given) or False
    # (a switch that is off), else read from a table (`UpOptions.smoke`).
    source = ast.parse(Path(tasks.__file__).read_text())
    written = [f"{fn.name}: {ast.unparse(default)}" for fn in source.body
               if isinstance(fn, ast.FunctionDef) and fn.decorator_list
               for default in fn.args.defaults + [d for d in fn.args.kw_defaults if d]
               if not (isinstance(default, ast.Constant) and default.value in (None, False))
               and not (isinstance(default, ast.Attribute) and isinstance(default.value, ast.Name)
                        and default.value.id in {t.__name__ for t in TASK_OPTIONS.values()})]
    assert written == []
    # Nor one in a task's body: `s.vendor or "cpu"` was build's default outside any table.
    fallbacks = [f"{fn.name}: {ast.unparse(node)}" for fn in source.body
                 if isinstance(fn, ast.FunctionDef) and fn.decorator_list
                 for node in ast.walk(fn) if isinstance(node, ast.BoolOp)
                 and isinstance(node.op, ast.Or) and isinstance(node.values[-1], ast.Constant)
                 and node.values[-1].value not in ("", None, False)]
    assert fallbacks == []
    tables = {name: {f.name: f for f in dataclasses.fields(table)}
              for name, table in TASK_OPTIONS.items()}
    settings = {f.name for f in dataclasses.fields(Settings)}
    for name in Collection.from_module(tasks).task_names:
        task = Collection.from_module(tasks)[name]
        own = tables.get(task.name, {})
        for param in inspect.signature(task.body).parameters.values():
            if param.name in own and own[param.name].default is True:
                # A switch on by default: invoke needs True; it is the table's.
                assert param.default is True, (name, param)
            elif param.name in own or param.name in settings:
                # An option from a table: not given is None; the table has the default.
                assert param.default in (None, False, inspect.Parameter.empty), \
                    f"{name} --{param.name} defaults to {param.default!r} beside its table"
            else:
                # Not from a table: no default but None or off, so none to write twice.
                assert param.default in (None, False, inspect.Parameter.empty), \
                    f"{name} --{param.name} defaults to {param.default!r} outside a table"
            if param.name in own:
                # (invoke pops a task's help as it builds the parser: read what feeds it)
                assert HELP[task.body.__name__][param.name] == help_text(own[param.name]), \
                    (name, param)
    requests = {"bench": (BenchRequest, {"workload", "mode", "request_rate"}),
                "tune": (TuneRequest, {"workload", "batch"}),
                "plan": (PlanRequest, {"goal", "batch", "context"})}
    for name, (request, names) in requests.items():
        defaults = {f.name: f.default for f in dataclasses.fields(request)}
        for option in names:
            assert defaults[option] == tables[name][option].default, (name, option)
    assert {f.name: f.default for f in dataclasses.fields(TuneRequest)}["budget_min"] == \
        tables["tune"]["budget"].default


def test_small_task_options_apply_the_table_default_and_parse_once() -> None:
    """#29: logs --tail, tiny-model --layers, bench-data --rows, tune-moe --budget and
    check --api default from the table; given text is parsed into the table's type."""
    import pytest

    from glmkit.errors import UsageError
    from glmkit.host.settings import LogsOptions, task_option

    assert task_option("logs", "tail", None) == LogsOptions.tail == 200
    assert task_option("logs", "tail", "7") == 7
    assert task_option("tiny_model", "layers", None) == 2
    assert task_option("bench_data", "rows", "5") == 5
    assert task_option("tune_moe", "budget", None) == 150.0
    assert task_option("check", "api", None) == "all"
    with pytest.raises(UsageError, match="--rows must be at least 1"):
        task_option("bench_data", "rows", "0")
    with pytest.raises(UsageError, match="--tail must be at most"):
        task_option("logs", "tail", str(1 << 40))


def test_a_task_options_limit_is_written_as_a_whole_number() -> None:
    import pytest

    from glmkit.errors import UsageError
    from glmkit.host.settings import task_option

    # {:g} wrote the limit as "1.04858e+06".
    with pytest.raises(UsageError, match=r"--tail must be at most 1,048,576, got 9+\.$"):
        task_option("logs", "tail", "99999999999")
