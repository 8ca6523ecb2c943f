#!/usr/bin/env bash
# The main job on the embedded default: set up, serve the tiny GLM model on the CPU,
# send one chat completion with a tool, check tool calling, benchmark it inside the
# container, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "[glmkit] $1 done in $((SECONDS - step_started)) s"; step_started=$SECONDS; }

bash scripts/setup.sh
step_started=$SECONDS
export PATH="$PWD/${GLMKIT_VENV:-.venv}/bin:$PATH"
port=${GLMKIT_PORT:-8000}

invoke up --vendor cpu
step "up"
trap 'invoke down; step "down"' EXIT

echo "--- one chat completion with a tool (thinking off) ---"
curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' -d '{
  "model": "glmkit/glm-tiny",
  "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
  "tools": [{"type": "function", "function": {"name": "get_weather",
             "parameters": {"type": "object", "required": ["city"],
                            "properties": {"city": {"type": "string", "enum": ["Paris"]}}}}}],
  "tool_choice": "required", "chat_template_kwargs": {"enable_thinking": false},
  "max_tokens": 32, "temperature": 0
}' | python3 -m json.tool
step "chat"

echo "--- tool-call conformance: every tool_choice, streamed and not ---"
invoke check
step "check"

echo "--- benchmark via docker exec (lengths fitted to the tiny model) ---"
invoke bench --workload custom --input-len 256 --output-len 64 --batch 1,32
step "bench"
