"""One settings table: each setting's type, default and help are declared once, on the
Settings field, and the tasks' options, `--no-X` switches and help derive from it."""

from __future__ import annotations

from dataclasses import fields

from glmkit.cli.help import BOOL_OPTIONS, HELP, SERVE_HELP
from glmkit.host.settings import Settings, help_text, user_settings


def test_every_setting_has_help_and_is_a_serve_option() -> None:
    names = {f.name for f in user_settings()}
    assert "extra_args_source" not in names
    for f in user_settings():
        assert f.metadata.get("help"), f"{f.name} has no help"
        if f.name != "extra_args":
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
