"""What a model group's door says of its members, for `invoke status`: which is awake,
when each last switched, which crashed. Read from the door's Prometheus metrics (the same
figures a Prometheus server scrapes), with the key the door's container holds."""

from __future__ import annotations

import time
from typing import Any

from glmkit.endpoints import published_url

MAX_METRICS = 1 << 20  # the door's metrics are a few KiB; more is not the door


def member_states(door: Any, now: float | None = None) -> dict[str, str]:
    """Each member's state in words, by served name; {} when the door does not answer."""
    import requests

    url = published_url(door.attrs.get("HostConfig", {}).get("PortBindings"))
    if url is None:
        return {}
    env = dict(str(e).split("=", 1) for e in door.attrs.get("Config", {}).get("Env") or []
               if "=" in str(e))
    key = env.get("VLLM_API_KEY")
    try:
        reply = requests.get(f"{url}/metrics", timeout=3,
                             headers={"Authorization": f"Bearer {key}"} if key else {})
    except requests.RequestException:
        return {}
    if reply.status_code != 200 or len(reply.content) > MAX_METRICS:
        return {}
    return parse_member_states(reply.text, now)


def parse_member_states(text: str, now: float | None = None) -> dict[str, str]:
    """The door's metrics (glmkit_group_member_state, ..._last_switch_timestamp_seconds,
    ..._queued) as one line per member; {} for text that is not its metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    states: dict[str, str] = {}
    since: dict[str, float] = {}
    queued: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                model = str(sample.labels.get("model", ""))[:128]
                if not model:
                    continue
                if sample.name == "glmkit_group_member_state" and sample.value == 1:
                    states[model] = str(sample.labels.get("state", "?"))[:20]
                elif sample.name == "glmkit_group_member_last_switch_timestamp_seconds":
                    since[model] = float(sample.value)
                elif sample.name == "glmkit_group_member_queued":
                    queued[model] = float(sample.value)
    except (ValueError, TypeError, IndexError):
        return {}
    now = time.time() if now is None else now
    lines = {}
    for model, state in states.items():
        line = "CRASHED" if state == "crashed" else state
        if model in since and 0 < since[model] <= now + 60:
            line += f" since {time.strftime('%H:%M:%S', time.localtime(since[model]))}"
        if queued.get(model):
            line += f", {queued[model]:.0f} queued"
        if state == "crashed":
            line += (": the door answers 503 for it (`invoke logs`; `invoke down` then "
                     "`invoke up` restarts the group)")
        lines[model] = line
    return lines
