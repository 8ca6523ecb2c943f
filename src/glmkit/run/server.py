"""The server a project runs, found by its container's labels: what bench and check
need to reach it (container, served name, context, URL, key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glmkit.endpoints import published_url
from glmkit.errors import UsageError
from glmkit.plan.serve import LABEL
from glmkit.run import engine


@dataclass(frozen=True)
class RunningServer:
    """A server glmkit started, as bench and check need it: read from its container's
    labels and inspect data."""

    container: str
    served_model: str
    model_ref: str
    max_model_len: int
    vendor: str
    image: str
    serve_args: tuple[str, ...]
    base_url: str
    # The server's API key, read from the container so bench authenticates without the
    # user passing it again; kept out of repr so it never reaches a log or a result.
    api_key: str | None = field(default=None, repr=False)

    @property
    def prefix_caching(self) -> bool:
        return "--no-enable-prefix-caching" not in self.serve_args


def server_from_container(container: Any) -> RunningServer:
    labels = container.labels
    env = dict(item.split("=", 1) for item in container.attrs["Config"].get("Env") or []
               if "=" in item)
    try:
        return RunningServer(container=container.name, served_model=labels[f"{LABEL}.served-model"],
                      model_ref=labels[f"{LABEL}.model-ref"],
                      max_model_len=int(labels[f"{LABEL}.max-model-len"]),
                      vendor=labels[f"{LABEL}.vendor"], image=labels[f"{LABEL}.image"],
                      serve_args=tuple(container.attrs["Config"].get("Cmd") or ()),
                      base_url=published_url(container.attrs["HostConfig"].get(
                          "PortBindings")) or f"http://127.0.0.1:{labels[f'{LABEL}.port']}",
                      api_key=env.get("VLLM_API_KEY") or None)
    except KeyError as err:
        raise UsageError(f"Container {container.name} was not started by this glmkit version "
                         f"(missing label {err}); run `invoke up` again.") from None


def running_server(project: str) -> tuple[Any, RunningServer]:
    """The running server of a compose project, and what bench and check need of it."""
    container = engine.find_container(engine.client(), project)
    if container is None or container.status != "running":
        raise UsageError(f"No running glmkit server in project {project!r}: `invoke up` "
                         "first.")
    return container, server_from_container(container)
