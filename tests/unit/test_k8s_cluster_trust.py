"""What the Kubernetes export and the multi-node files let through (issue #17, items 1,
10 and 11): `$(VAR)` in user text, the pods' privileges, names Kubernetes refuses, and
every address and secret a cluster's nodes expose."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.plan.cluster import (
    DP_RPC_PORT,
    MASTER_PORT,
    RAY_PORT,
    ClusterPlan,
    build_cluster,
    parse_nodes,
)
from glmkit.plan.serve import ServePlan
from glmkit.render import k8s
from glmkit.render.cluster_compose import cluster_compose
from glmkit.run import lifecycle, ray

from .helpers import plan_for

ROOT = Path(__file__).resolve().parents[2]
HOSTNAMES = "head=ssh://gpu1,w1=ssh://root@gpu2:22"
IPS = "head=ssh://10.1.0.1,w1=ssh://root@10.1.0.2:22,w2=10.1.0.3"
HOSTILE_ARGS = ("--chat-template-content-format", "$(HF_TOKEN)",
                "--tool-call-parser", "a$$b$", "--chat-template", "$(VLLM_API_KEY")
HOSTILE_ENV = {"GLMKIT_NOTE": "$(HF_TOKEN) costs $$5 and $", "OTHER": "$("}
LWS_ENV = {"LWS_LEADER_ADDRESS": "glmkit-0.glmkit.default", "LWS_WORKER_INDEX": "1",
           "HF_TOKEN": "hf_SECRET", "VLLM_API_KEY": "sk-SECRET"}


def kube_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a container's command, args and env values (a port of
    k8s.io/kubernetes third_party/forked/golang/expansion): `$$` is `$`, `$(NAME)` is the
    variable's value when it is defined and stays as written when not, any other `$` is
    itself, and an unclosed `$(` is kept."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2:close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def test_the_reference_expansion_follows_kubernetes() -> None:
    env = {"A": "x"}
    assert kube_expand("$(A)", env) == "x"
    assert kube_expand("$$(A)", env) == "$(A)"
    assert kube_expand("$(B)", env) == "$(B)"
    assert kube_expand("a$b$", env) == "a$b$"
    assert kube_expand("$$$$", env) == "$$"
    assert kube_expand("$(A", env) == "$(A"


def hostile(plan: ServePlan) -> ServePlan:
    # As the user's own flags: every command the plan makes carries them.
    command = dataclasses.replace(plan.command, user=(*plan.command.user, *HOSTILE_ARGS))
    return dataclasses.replace(plan, command=command,
                               environment={**plan.environment, **HOSTILE_ENV})


def containers(manifests_text: str) -> dict[str, dict[str, Any]]:
    """Containers by where they run (deployment, leader, worker), read back from YAML."""
    found: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(manifests_text):
        if doc["kind"] == "Deployment":
            found["deployment"] = doc["spec"]["template"]["spec"]["containers"][0]
        if doc["kind"] == "LeaderWorkerSet":
            spec = doc["spec"]["leaderWorkerTemplate"]
            found["leader"] = spec["leaderTemplate"]["spec"]["containers"][0]
            found["worker"] = spec["workerTemplate"]["spec"]["containers"][0]
    return found


def set_value(args: tuple[str, ...] | list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def test_user_text_reaches_a_single_node_pod_literally() -> None:
    plan = hostile(plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", tp=8))
    container = containers(k8s.dump(k8s.single_node(plan)))["deployment"]
    assert set(HOSTILE_ARGS) <= set(plan.serve_args)
    assert [kube_expand(a, LWS_ENV) for a in container["args"]] == list(plan.serve_args)
    assert [kube_expand(a, LWS_ENV) for a in container["command"]] == ["vllm", "serve"]
    env = {e["name"]: kube_expand(e["value"], LWS_ENV) for e in container["env"]
           if "value" in e}
    assert env == dict(plan.environment)


def test_user_text_reaches_lws_pods_literally_while_lws_refs_expand() -> None:
    base = hostile(plan_for(vendor="cuda", model="zai-org/GLM-4.5", tp=1, nodes="2"))
    cluster = build_cluster(base, parse_nodes(HOSTNAMES), "mp", tp=None, pp=None,
                            gpus_per_node=8)
    assert set(HOSTILE_ARGS) <= set(cluster.node_args["w1"])
    manifests = k8s.multi_node(cluster)
    k8s.validate(manifests)
    pods = containers(k8s.dump(manifests))
    for role, node, rank in (("leader", "head", "0"), ("worker", "w1", "1")):
        intended = set_value(cluster.node_args[node], "--master-addr",
                             LWS_ENV["LWS_LEADER_ADDRESS"])
        intended = set_value(intended, "--node-rank", rank)
        intended = set_value(set_value(intended, "--host", "0.0.0.0"), "--port", "8000")
        got = [kube_expand(a, LWS_ENV) for a in pods[role]["args"]]
        assert got == intended, role
        assert "hf_SECRET" not in " ".join(got) and "sk-SECRET" not in " ".join(got)
        assert {e["name"]: kube_expand(e["value"], LWS_ENV) for e in pods[role]["env"]
                if "value" in e} == dict(base.environment)
    # The in-memory manifests keep the kit's references as they will be expanded.
    worker = manifests[1]["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    assert "$(LWS_WORKER_INDEX)" in worker["spec"]["containers"][0]["args"]


def test_a_reference_is_only_a_variable_name() -> None:
    assert k8s.KubeRef("LWS_WORKER_INDEX") == "$(LWS_WORKER_INDEX)"
    for bad in ("", "A)B", "$(X)", "A B", "1A"):
        with pytest.raises(ValueError):
            k8s.KubeRef(bad)


def pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for m in manifests:
        if m["kind"] == "Deployment":
            specs.append(m["spec"]["template"]["spec"])
        if m["kind"] == "LeaderWorkerSet":
            lws = m["spec"]["leaderWorkerTemplate"]
            specs += [lws["leaderTemplate"]["spec"], lws["workerTemplate"]["spec"]]
    return specs


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
def test_pods_are_as_confined_as_the_compose_service(vendor: str) -> None:
    single = k8s.single_node(plan_for(vendor=vendor, model="zai-org/GLM-4.6-FP8", tp=8))
    base = plan_for(vendor=vendor, model="zai-org/GLM-4.6", tp=1, nodes="2")
    multi = k8s.multi_node(build_cluster(base, parse_nodes(HOSTNAMES), "mp", tp=None,
                                         pp=None, gpus_per_node=8))
    for manifests in (single, multi):
        k8s.validate(manifests)
        for spec in pod_specs(manifests):
            assert spec["automountServiceAccountToken"] is False
            (container,) = spec["containers"]
            profile = container["securityContext"]["seccompProfile"]["type"]
            # ROCm's images need what compose gives them (seccomp=unconfined); no other.
            assert profile == ("Unconfined" if vendor == "rocm" else "RuntimeDefault")
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                    if "valueFrom" in e}
            assert refs["VLLM_API_KEY"].get("optional") is not True
            assert refs["HF_TOKEN"]["optional"] is True
    header = k8s.dump(single).split("\n---", 1)[0]
    assert "required" in header and "vllm-api-key" in header


@pytest.mark.parametrize("name", ["my_project", "1abc", "abc-", "my.project"])
def test_names_kubernetes_refuses_are_refused_before_anything_is_written(
        name: str, tmp_path: Path) -> None:
    from glmkit.run.deploy import export_k8s

    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", tp=8, project=name) \
        if "." not in name else \
        dataclasses.replace(plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", tp=8),
                            project=name)
    with pytest.raises(UsageError, match="not a Kubernetes name") as err:
        export_k8s(plan, tmp_path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_leader_worker_set_name_leaves_room_for_its_stateful_sets() -> None:
    ok = plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", tp=8, project="a" * 63)
    k8s.single_node(ok)  # a Deployment and a Service take a full label
    base = plan_for(vendor="cuda", model="zai-org/GLM-4.6", tp=1, nodes="2",
                    project="a" * 51)
    cluster = build_cluster(base, parse_nodes(HOSTNAMES), "mp", tp=None, pp=None,
                            gpus_per_node=8)
    with pytest.raises(UsageError, match="at most 50"):
        k8s.multi_node(cluster)


def real_cluster(engine: str, nodes: str = IPS, **settings: Any) -> ClusterPlan:
    base = plan_for(vendor="cuda", model="zai-org/GLM-4.5", tp=1, nodes="2", **settings)
    return build_cluster(base, parse_nodes(nodes), engine, tp=8, pp=None, gpus_per_node=8)


def commands(cluster: ClusterPlan) -> list[list[str]]:
    """Every command a node runs: each service's, and what `up` starts on a Ray head."""
    runs = [list(data["services"][node]["command"]) for data in cluster_compose(cluster).values()
            for node in data["services"]]
    if cluster.head_command:
        runs.append(list(cluster.head_command))
    return runs


def binds(argv: list[str]) -> list[tuple[str, str]]:
    """(flag, address) for every flag that names an address to listen on or be reached at."""
    flags = ("--host", "--master-addr", "--data-parallel-address", "--node-ip-address",
             "--dashboard-host", "--address")
    found = []
    for i, word in enumerate(argv):
        name, eq, value = word.partition("=")
        if name in flags:
            found.append((name, value if eq else argv[i + 1]))
    return found


WILDCARDS = ("0.0.0.0", "::", "[::]", "*")


@pytest.mark.parametrize("nodes", [IPS, HOSTNAMES])
@pytest.mark.parametrize("engine", ["mp", "dp", "ray"])
@pytest.mark.parametrize("host", ["localhost", "10.1.0.1"])
def test_real_nodes_bind_nothing_to_every_interface(engine: str, nodes: str,
                                                    host: str) -> None:
    cluster = real_cluster(engine, nodes, host=host)
    for argv in commands(cluster):
        text = " ".join(argv)
        assert not any(w in re.split(r"[\s=:]", text) for w in ("0.0.0.0", "*")), argv
        for flag, address in binds(argv):
            assert address.split(":")[0] not in WILDCARDS, (flag, argv)
        if argv[0] != "start":  # vLLM on a node (ray: `up` runs it on the head)
            assert ("--host", cluster.base.host) in binds(argv)
    if engine == "ray":
        head = cluster.node_args["head"]
        assert "--include-dashboard=false" in head or any(
            f.startswith("--dashboard-host=") for f in head)
        if nodes == IPS:
            for node in cluster.nodes:
                assert f"--node-ip-address={node.address}" in cluster.node_args[node.name]


@pytest.mark.parametrize("engine", ["mp", "dp", "ray"])
def test_the_api_is_on_every_interface_only_when_asked(engine: str) -> None:
    cluster = real_cluster(engine, host="0.0.0.0")
    for argv in commands(cluster):
        wild = [b for b in binds(argv) if b[1].split(":")[0] in WILDCARDS]
        assert wild in ([], [("--host", "0.0.0.0")]), argv
    serving = cluster.head_command or cluster.node_args["head"]
    assert ("--host", "0.0.0.0") in binds(list(serving))


def test_the_api_keeps_the_users_port_on_the_host_network(monkeypatch: Any) -> None:
    for engine in ("mp", "dp", "ray"):
        cluster = real_cluster(engine, port=9000)
        serving = list(cluster.head_command or cluster.node_args["head"])
        assert serving[serving.index("--port") + 1] == "9000", engine
        assert cluster.api_port == 9000
        head = cluster_compose(cluster)["glmkit-head"]["services"]["head"]
        if engine != "ray":
            assert "GLMKIT_PORT=9000" in head["environment"]  # the health check's port
    seen: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> Any:
        seen.append(argv)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(lifecycle, "run", fake_run)
    assert head_probe(real_cluster("mp", port=9000))
    assert "GLMKIT_PORT=9000" in seen[0]
    for taken in (MASTER_PORT, DP_RPC_PORT, RAY_PORT):
        with pytest.raises(UsageError, match="nodes use among themselves"):
            real_cluster("mp", port=taken)


class Named:
    name = "glmkit-head-1"


def head_probe(cluster: ClusterPlan) -> bool:
    """The lifecycle's probe of a running head, as it polls the cluster."""
    head = cluster.parts()[0]
    return lifecycle.probe(cluster, lifecycle.PartState(head, Named(), "running", 0, 0))


@pytest.mark.parametrize(("host", "probed"), [
    ("10.1.0.1", "10.1.0.1"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "127.0.0.1")])
def test_a_head_binding_a_node_address_is_probed_there(monkeypatch: Any, host: str,
                                                       probed: str) -> None:
    # The head of a cluster on real nodes serves on the host network at the user's --host:
    # bound to the node's own address, a probe of 127.0.0.1 could never succeed.
    seen: list[list[str]] = []
    monkeypatch.setattr(lifecycle, "run", lambda argv, **_: seen.append(argv) or type(
        "Done", (), {"returncode": 0})())
    cluster = real_cluster("mp", host=host, port=9000)
    assert head_probe(cluster)
    (argv,) = seen
    assert argv[:2] == ["docker", "exec"] and "glmkit-head-1" in argv
    assert f"GLMKIT_HOST={probed}" in argv and "GLMKIT_PORT=9000" in argv
    assert "GLMKIT_REQUEST=1" in argv  # a head whose worker died still answers /health
    # Only the head is probed; the workers need only run.
    assert [p.probe is not None for p in cluster.parts()] == [True, False, False]


@pytest.mark.parametrize("nodes", [
    "head=ssh://0.0.0.0,w1=gpu2", "head=0,w1=gpu2", "head=gpu1,w1=0x0",
    "head=127.0.0.1,w1=gpu2", "head=ssh://root@127.1,w1=gpu2", "head=localhost,w1=gpu2",
    "head=ssh://-oProxyCommand,w1=gpu2", "head=.gpu1,w1=gpu2"])
def test_nodes_must_be_addresses_other_nodes_reach(nodes: str) -> None:
    with pytest.raises(UsageError, match="--nodes"):
        parse_nodes(nodes)


@pytest.mark.parametrize("nodes", ["2", IPS])
def test_ray_takes_a_token_by_name_only(nodes: str) -> None:
    from glmkit.render.compose import dump

    if nodes == "2":
        base = plan_for(tp=1, nodes="2")
        cluster = build_cluster(base, parse_nodes("2"), "ray", tp=None, pp=None,
                                gpus_per_node=1)
    else:
        cluster = real_cluster("ray")
    for data in cluster_compose(cluster).values():
        for service in data["services"].values():
            assert "RAY_AUTH_MODE=token" in service["environment"]
            assert "RAY_AUTH_TOKEN" in service["environment"]  # a name: compose's env
        assert "RAY_AUTH_TOKEN=" not in dump(data)


class FakeContainer:
    def __init__(self, env: list[str]) -> None:
        self.name = "glmkit-head-1"
        self.attrs = {"Config": {"Env": env}, "State": {"Status": "running"}}


def start_ray(monkeypatch: Any, env: dict[str, str], head_env: list[str] | None
              ) -> list[dict[str, str]]:
    """lifecycle.start on three real nodes with Docker faked: each node's
    `docker compose up` environment."""
    cluster = real_cluster("ray")
    composed: list[dict[str, str]] = []

    def fake_run(argv: list[str], env: dict[str, str] | None = None, **_: Any) -> Any:
        if "compose" in argv:
            composed.append(dict(env or {}))
        return type("Done", (), {"returncode": 0, "stdout": ""})()

    states = [lifecycle.PartState(
        part, FakeContainer(head_env) if head_env is not None and i == 0 else None,
        "running" if head_env is not None and i == 0 else "missing", 0, 0)
        for i, part in enumerate(cluster.parts())]
    monkeypatch.setattr(lifecycle, "run", fake_run)
    monkeypatch.setattr(lifecycle, "part_states", lambda _: states)
    monkeypatch.setattr(ray, "serve_once_formed", lambda *_: None)
    monkeypatch.setattr(ray, "auth_warning", lambda *_: None)
    monkeypatch.setattr(lifecycle, "wait", lambda *_: 1.0)
    lifecycle.start(cluster, [Path(f"/x/{n.name}.yaml") for n in cluster.nodes],
                    {"HF_TOKEN": "hf_x"}, None, env)  # type: ignore[arg-type]
    return composed


def test_every_ray_node_gets_the_same_token(monkeypatch: Any) -> None:
    composed = start_ray(monkeypatch, {}, None)
    tokens = {env.get("RAY_AUTH_TOKEN") for env in composed}
    assert len(composed) == 3 and len(tokens) == 1
    (token,) = tokens
    assert token and len(token) >= 32
    assert all(env["HF_TOKEN"] == "hf_x" for env in composed)
    # Another start makes another token: none is built in.
    assert start_ray(monkeypatch, {}, None)[0]["RAY_AUTH_TOKEN"] != token


def test_the_users_ray_token_wins_then_the_running_heads(monkeypatch: Any) -> None:
    composed = start_ray(monkeypatch, {"RAY_AUTH_TOKEN": "mine"}, ["RAY_AUTH_TOKEN=old"])
    assert {env["RAY_AUTH_TOKEN"] for env in composed} == {"mine"}
    composed = start_ray(monkeypatch, {}, ["PATH=/bin", "RAY_AUTH_TOKEN=old"])
    assert {env["RAY_AUTH_TOKEN"] for env in composed} == {"old"}


@pytest.mark.parametrize(("version", "warned"), [
    ("ray, version 2.48.0\n", True), ("ray, version 2.52.0\n", False),
    ("ray, version 2.58.0\n", False), ("", False)])
def test_a_ray_without_token_auth_is_named(monkeypatch: Any, version: str,
                                           warned: bool) -> None:
    cluster = real_cluster("ray")
    monkeypatch.setattr(ray, "run", lambda *_, **__: type(
        "Done", (), {"returncode": 0, "stdout": version})())
    warning = ray.auth_warning("glmkit-head-1", cluster.head.docker_host,
                               cluster.base.image.ref)
    assert bool(warning) is warned
    if warning:
        assert "6379" in warning and "private network" in warning


def test_security_md_describes_the_cluster_as_it_is() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    (network,) = [line for line in text.splitlines() if line.startswith("| network |")]
    assert "host network" in network and "#multi-node-clusters" in network
    for needed in (str(MASTER_PORT), str(DP_RPC_PORT), str(RAY_PORT), "network_mode: host",
                   "RAY_AUTH_TOKEN", "--include-dashboard=false", "--node-ip-address"):
        assert needed in text, needed
