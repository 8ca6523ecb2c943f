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


def served_names(serve_args: tuple[str, ...]) -> tuple[str, ...]:
    """The names a server answers to: the words after --served-model-name."""
    args = list(serve_args)
    if "--served-model-name" not in args:
        return ()
    names = args[args.index("--served-model-name") + 1:]
    return tuple(n for n in names[:next((i for i, n in enumerate(names)
                                         if n.startswith("-")), len(names))])


def _group_member(c: Any, project: str, door: Any, model: str | None
                  ) -> tuple[Any, RunningServer]:
    """A model group's member named by `model` (its catalog id, served name or an alias;
    None: the first), reached through the door, whose URL clients use; `vllm bench serve`
    inside the member reaches the door on their shared loopback."""
    members = sorted((ct for ct in engine.project_containers(c, project)
                      if ct.labels.get(label_key("role")) == "member"),
                     key=lambda ct: ct.labels.get(label_key("member"), ""))
    known = {ct: {ct.labels.get(label_key("model")), ct.labels.get(label_key("served_model")),
                  *served_names(tuple(ct.attrs["Config"].get("Cmd") or ()))}
             for ct in members}
    found = next((ct for ct in members if (ct.labels.get(label_key("member")) == "1"
                                           if model is None else model in known[ct])), None)
    if found is None:
        names = ", ".join(str(ct.labels.get(label_key("served_model"))) for ct in members)
        raise UsageError(f"The model group {project!r} has no member {model!r}; its models: "
                         f"{names or 'none'}.")
    if found.status != "running":
        raise UsageError(f"{found.labels.get(label_key('served_model'))} in the model group "
                         f"{project!r} is not running ({found.status}): `invoke status` "
                         "shows the group; `invoke down` then `invoke up` restarts it.")
    server = server_from_container(found)
    return found, replace(server, base_url=server_from_container(door).base_url,
                          bench_url=f"http://127.0.0.1:{CONTAINER_PORT}")


def running_server(project: str, model: str | None = None) -> tuple[Any, RunningServer]:
    """The running server of a compose project, and what bench and check need of it. For
    a pd_cluster: the router's URL, and a decode container to run vLLM's client in. For a
    model group: the member `model` names (default: the first) behind the door's URL.
    `model` for one server must be a name it answers to."""
    c = engine.client()
    container = engine.find_container(c, project)
    if container is None or container.status != "running":
        raise UsageError(f"No running glmkit server in project {project!r}: `invoke up` "
                         "first.")
    if container.labels.get(label_key("role")) == "door":
        return _group_member(c, project, container, model)
    server = server_from_container(container)
    names = {server.served_model, container.labels.get(label_key("model")),
             *served_names(server.serve_args)}
    if model is not None and model not in names:
        raise UsageError(f"Project {project!r} serves {server.served_model!r}, not "
                         f"{model!r}: --model names a member of a model group.")
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
