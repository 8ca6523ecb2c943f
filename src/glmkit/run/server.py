"""The server a project runs, found by its container's labels: what bench and check
need to reach it (container, served name, context, URL, key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glmkit.endpoints import published_url
from glmkit.errors import UsageError
from glmkit.labels import MissingLabel, ServerLabels, label_key
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
    env = dict(item.split("=", 1) for item in container.attrs["Config"].get("Env") or []
               if "=" in item)
    try:
        labels = ServerLabels.from_labels(container.labels)
        base_url = published_url(container.attrs["HostConfig"].get("PortBindings"))
        if base_url is None and labels.port is None:
            raise MissingLabel(label_key("port"))
    except MissingLabel as err:
        raise UsageError(f"Container {container.name} was not started by this glmkit version "
                         f"(missing label {err}); run `invoke up` again.") from None
    return RunningServer(container=container.name, served_model=labels.served_model,
                         model_ref=labels.model_ref, max_model_len=labels.max_model_len,
                         vendor=labels.vendor, image=labels.image,
                         serve_args=tuple(container.attrs["Config"].get("Cmd") or ()),
                         base_url=base_url or f"http://127.0.0.1:{labels.port}",
                         api_key=env.get("VLLM_API_KEY") or None)


def running_server(project: str) -> tuple[Any, RunningServer]:
    """The running server of a compose project, and what bench and check need of it."""
    container = engine.find_container(engine.client(), project)
    if container is None or container.status != "running":
        raise UsageError(f"No running glmkit server in project {project!r}: `invoke up` "
                         "first.")
    return container, server_from_container(container)
