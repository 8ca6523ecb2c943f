"""The server a project runs, found by its container's labels: what bench and check
need to reach it (container, served name, context, URL, key)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from glmkit.endpoints import CONTAINER_PORT, published_url
from glmkit.errors import UsageError
from glmkit.labels import MissingLabel, ServerLabels, label_key
from glmkit.plan.model_facts import TINY_MODELS, ModelFacts
from glmkit.plan.pd import ROUTER
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
    # Where `vllm bench serve` inside `container` sends requests, when not to itself
    # (a pd_cluster: from a decode container to the router).
    bench_url: str | None = None
    # What the plan decided of the model it serves (vision, tiny, exact answers).
    facts: ModelFacts = field(default_factory=ModelFacts)

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
                         api_key=env.get("VLLM_API_KEY") or None, facts=facts_of(labels))


def facts_of(labels: ServerLabels) -> ModelFacts:
    """The model facts its labels carry; an older glmkit's server has none of them."""
    tiny = next((kind for kind in TINY_MODELS if kind == labels.tiny), None)
    return ModelFacts(vision=bool(labels.vision), tiny=tiny,
                      exact_answers=bool(labels.exact_answers))


def running_server(project: str) -> tuple[Any, RunningServer]:
    """The running server of a compose project, and what bench and check need of it. For
    a pd_cluster: the router's URL, and a decode container to run vLLM's client in."""
    c = engine.client()
    container = engine.find_container(c, project)
    if container is None or container.status != "running":
        raise UsageError(f"No running glmkit server in project {project!r}: `invoke up` "
                         "first.")
    server = server_from_container(container)
    if container.labels.get(label_key("role")) != "router":
        return container, server
    decode = next((ct for ct in engine.project_containers(c, project)
                   if ct.labels.get(label_key("role")) == "decode" and ct.status == "running"),
                  None)
    if decode is None:
        raise UsageError(f"The pd_cluster {project!r} has no running decode server: "
                         "`invoke status` shows its parts; `invoke up` again.")
    pool = server_from_container(decode)
    return decode, replace(pool, base_url=server.base_url,
                           bench_url=f"http://{ROUTER}:{CONTAINER_PORT}")
