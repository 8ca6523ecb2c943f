"""Pointing a coding agent at the server: the environment Claude Code and Codex (or any
Anthropic or OpenAI client) need, printed by `invoke up` and `invoke status`.

The key is named, never shown: `ANTHROPIC_AUTH_TOKEN="$VLLM_API_KEY"`. Claude Code
sends ANTHROPIC_AUTH_TOKEN as `Authorization: Bearer`, which vLLM accepts; its
ANTHROPIC_API_KEY goes out as `x-api-key`, which vLLM 0.32 refuses (vllm#51572).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

# Claude Code's own traffic (telemetry, error reports, update checks) off: a local model
# needs no other network.
CLAUDE_QUIET = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
KEY_VAR = "VLLM_API_KEY"
CODEX_PROVIDER = "glmkit"


@dataclass(frozen=True)
class AgentSetup:
    client: str
    env: tuple[tuple[str, str], ...]  # (name, shell text: a value or "$VLLM_API_KEY")
    command: str  # a first command to try

    def lines(self) -> list[str]:
        return [f"export {name}={value}" for name, value in self.env] + [self.command]


def served_names(serve_args: Sequence[str]) -> list[str]:
    """Every name after `--served-model-name` in a server's arguments (its own, then
    the aliases)."""
    args = list(serve_args)
    if "--served-model-name" not in args:
        return []
    names = []
    for word in args[args.index("--served-model-name") + 1:]:
        if word.startswith("-"):
            break
        names.append(word)
    return names


def _model_for(names: Sequence[str], prefix: str) -> str:
    """The alias a client of this kind would ask for (claude-…, gpt-…), else the name."""
    return next((n for n in names[1:] if n.startswith(prefix)), names[0])


def setups(base_url: str, names: Sequence[str], keyed: bool, context: int
           ) -> list[AgentSetup]:
    """Claude Code (Anthropic Messages) and Codex / OpenAI clients (Responses, chat), for
    a server of `context` tokens (--max-model-len)."""
    token = f'"${KEY_VAR}"' if keyed else "none"  # a keyless server takes any token
    claude = _model_for(names, "claude")
    claude_env = (("ANTHROPIC_BASE_URL", base_url), ("ANTHROPIC_AUTH_TOKEN", token),
                  ("ANTHROPIC_MODEL", shlex.quote(claude)),
                  ("ANTHROPIC_DEFAULT_HAIKU_MODEL", shlex.quote(claude)),  # small/fast
                  ("ANTHROPIC_SMALL_FAST_MODEL", shlex.quote(claude)),  # older releases
                  # Claude Code knows the windows of its own models only, and asks for
                  # 32000 output tokens, more than a small context holds.
                  ("CLAUDE_CODE_MAX_CONTEXT_TOKENS", str(context)),
                  ("CLAUDE_CODE_MAX_OUTPUT_TOKENS", str(min(32000, context // 4))),
                  *CLAUDE_QUIET.items())
    codex = _model_for(names, "gpt")
    codex_env = (("OPENAI_BASE_URL", f"{base_url}/v1"), ("OPENAI_API_KEY", token))
    provider = (f'model_providers.{CODEX_PROVIDER}={{name="glmkit", base_url="{base_url}/v1", '
                f'env_key="OPENAI_API_KEY", wire_api="responses"}}')
    codex_cmd = shlex.join(["codex", "exec", "--skip-git-repo-check", "-c", provider, "-c",
                            f"model_provider={CODEX_PROVIDER}", "-m", codex, "Say hello."])
    return [AgentSetup("Claude Code", claude_env, 'claude -p "Say hello."'),
            AgentSetup("Codex / OpenAI clients", codex_env, codex_cmd)]


def for_project(project: str) -> list[AgentSetup]:
    """The setups for a project's running server; none when it does not run."""
    from glmkit.errors import GlmkitError
    from glmkit.run.server import running_server

    try:
        _, target = running_server(project)
    except GlmkitError:
        return []
    names = served_names(target.serve_args) or [target.served_model]
    return setups(target.base_url, names, target.api_key is not None, target.max_model_len)
