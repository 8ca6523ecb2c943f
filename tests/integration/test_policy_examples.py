"""The policy's render property (tests/unit/test_policy.py) over many more examples."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.unit.test_policy import ARGS, ENV_TEXT, renders_as_written_or_fails_with_one_line


@settings(max_examples=1000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=ARGS, host_env=ENV_TEXT)
def test_any_arguments_render_as_written_or_fail_with_one_line(
        env: dict[str, str], words: list[str], host_env: dict[str, str]) -> None:
    renders_as_written_or_fails_with_one_line(env, words, host_env)
