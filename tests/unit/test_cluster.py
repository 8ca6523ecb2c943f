from __future__ import annotations

import pytest

from glmkit.errors import UsageError
from glmkit.host.settings import resolve_settings
from glmkit.knowledge.catalog import CATALOG
from glmkit.knowledge.sizing import ARCH, GPUS, arch_key, fit
from glmkit.plan.cluster import build_cluster, parse_nodes
from glmkit.render import k8s
from glmkit.render.cluster_compose import cluster_compose

from .compose_schema import check_compose
from .helpers import plan_for

REMOTE = "head=ssh://gpu1,w1=ssh://root@gpu2:22"


def arg(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_parse_nodes() -> None:
    local = parse_nodes("2")
    assert [(n.name, n.rank, n.docker_host, n.address) for n in local] == \
        [("head", 0, None, "head"), ("worker1", 1, None, "worker1")]
    remote = parse_nodes(REMOTE)
    assert remote[1].docker_host == "ssh://root@gpu2:22" and remote[1].address == "gpu2"
    assert parse_nodes("head=gpu1,w1=gpu2")[0].docker_host == "ssh://gpu1"
    for bad in ("1", "17", "head=ssh://a", "head=a,head=b", "Head=a,w=b", "head=,w=b"):
        with pytest.raises(UsageError):
            parse_nodes(bad)


def test_mp_engine_follows_vllms_multi_node_flags() -> None:
    base = plan_for(vendor="cuda", model="zai-org/GLM-4.5", tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes(REMOTE), "mp", tp=None, pp=None, gpus_per_node=8)
    head, worker = cluster.node_args["head"], cluster.node_args["w1"]
    assert (cluster.tensor_parallel, cluster.pipeline_parallel) == (8, 2)
    for args, rank in ((head, "0"), (worker, "1")):
        assert arg(args, "--tensor-parallel-size") == "8"
        assert arg(args, "--pipeline-parallel-size") == "2"
        assert arg(args, "--nnodes") == "2" and arg(args, "--node-rank") == rank
        assert arg(args, "--master-addr") == "gpu1"
        assert arg(args, "--distributed-executor-backend") == "mp"
        assert args.count("--tensor-parallel-size") == 1
    assert "--headless" in worker and "--headless" not in head
    with pytest.raises(UsageError, match="TP 4 × PP 3"):
        build_cluster(base, parse_nodes(REMOTE), "mp", tp=4, pp=3, gpus_per_node=8)


def test_dp_and_ray_engines() -> None:
    base = plan_for(vendor="cuda", model="zai-org/GLM-4.5-Air-FP8", tp=1, nodes="2")
    dp = build_cluster(base, parse_nodes(REMOTE), "dp", tp=2, pp=None, gpus_per_node=8)
    worker = dp.node_args["w1"]
    assert arg(worker, "--data-parallel-size") == "8"
    assert arg(worker, "--data-parallel-size-local") == "4"
    assert arg(worker, "--data-parallel-start-rank") == "4"
    assert arg(worker, "--data-parallel-address") == "gpu1" and "--headless" in worker
    ray = build_cluster(base, parse_nodes(REMOTE), "ray", tp=8, pp=2, gpus_per_node=8)
    assert ray.node_args["head"] == ("start", "--head", "--port=6379",
                                     "--include-dashboard=false", "--block")
    assert ray.node_args["w1"] == ("start", "--address=gpu1:6379", "--block")
    assert ray.head_command is not None
    assert arg(ray.head_command, "--distributed-executor-backend") == "ray"
    # The engine is parsed once, where settings are read: a Literal, not a string.
    with pytest.raises(UsageError, match="--engine 'slurm': choose one of mp, dp, ray"):
        resolve_settings({"engine": "slurm"})


def test_local_simulation_compose() -> None:
    base = plan_for(tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes("2"), "mp", tp=None, pp=None, gpus_per_node=1)
    assert cluster.tensor_parallel == 2 and cluster.pipeline_parallel == 1  # TP across CPUs
    (data,) = cluster_compose(cluster).values()
    head, worker = data["services"]["head"], data["services"]["worker1"]
    assert head["ports"] and "ports" not in worker
    assert "healthcheck" in head and "healthcheck" not in worker
    assert head["cpuset"] == "0" and worker["cpuset"] == "1"
    assert head["hostname"] == "head"
    assert worker["labels"]["io.glmkit.node"] == "worker1"
    assert worker["cap_drop"] == ["ALL"]


def test_remote_nodes_use_the_host_network_and_loopback_api() -> None:
    base = plan_for(vendor="cuda", model="zai-org/GLM-4.5", tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes(REMOTE), "mp", tp=None, pp=None, gpus_per_node=8,
                            ifname="ib0", rdma=True)
    files = cluster_compose(cluster)
    assert sorted(files) == ["glmkit-head", "glmkit-w1"]
    head = files["glmkit-head"]["services"]["head"]
    assert head["network_mode"] == "host" and "ports" not in head
    assert arg(tuple(head["command"]), "--host") == "127.0.0.1"
    assert "GLOO_SOCKET_IFNAME=ib0" in head["environment"]
    assert "/dev/infiniband:/dev/infiniband" in head["devices"]
    assert any("29501" in port for port in cluster.ports())


def needs_more_than_one_node(model_id: str) -> bool:
    model = CATALOG[model_id]
    return not fit(model, ARCH[arch_key(model)], GPUS["H100"], 8, model.precision).fits


BIG = [m for m in CATALOG if m.startswith("zai-org/") and needs_more_than_one_node(m)]


def test_sizing_agrees_with_the_recipes_on_what_outgrows_8_h100() -> None:
    # 8 H100 hold 640 GB: the BF16 355B models and GLM-5.x in BF16 and FP8 need more;
    # the recipes' vram_minimum_gb says the same.
    assert sorted(BIG) == sorted(m for m in CATALOG if m.startswith("zai-org/")
                                 and CATALOG[m].vram_minimum_gb > 640)
    assert "zai-org/GLM-4.6" in BIG and "zai-org/GLM-5.2-FP8" in BIG
    assert "zai-org/GLM-4.6-FP8" not in BIG


@pytest.mark.parametrize("engine", ["mp", "dp", "ray"])
@pytest.mark.parametrize("model_id", BIG)
def test_multi_node_layouts_fit_the_compose_schema(model_id: str, engine: str) -> None:
    base = plan_for(vendor="cuda", model=model_id, tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes(REMOTE), engine, tp=8,
                            pp=None, gpus_per_node=8)
    for data in cluster_compose(cluster).values():
        service = next(iter(check_compose(data)["services"].values()))
        assert service["network_mode"] == "host"


@pytest.mark.parametrize("vendor", ["cuda", "rocm"])
@pytest.mark.parametrize("model_id", [m for m in CATALOG if m.startswith("zai-org/")])
def test_k8s_single_node_validates(model_id: str, vendor: str) -> None:
    from .helpers import gpus

    # The largest node of each vendor, so every checkpoint of the family fits one.
    machine = gpus(vendor, 8, 294912, "AMD Instinct MI355X") if vendor == "rocm" else \
        gpus(vendor, 8, 274432, "NVIDIA B300 SXM6 AC")
    if "NVFP4" in model_id and vendor == "rocm":
        with pytest.raises(UsageError, match="nvfp4 needs NVIDIA blackwell"):
            plan_for(hw=machine, vendor=vendor, model=model_id)
        return
    manifests = k8s.single_node(plan_for(hw=machine, vendor=vendor, model=model_id))
    k8s.validate(manifests)
    deployment = manifests[1]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    resource = k8s.GPU_RESOURCE[vendor]
    assert container["resources"]["limits"][resource] >= 1
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert {e["name"]: e.get("valueFrom") for e in container["env"]}["HF_TOKEN"] == \
        {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}}
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("model_id", BIG)
def test_k8s_leader_worker_set_validates(model_id: str) -> None:
    base = plan_for(vendor="cuda", model=model_id, tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes(REMOTE), "mp", tp=None, pp=None, gpus_per_node=8)
    manifests = k8s.multi_node(cluster)
    k8s.validate(manifests)
    lws = manifests[1]["spec"]["leaderWorkerTemplate"]
    assert lws["size"] == 2
    worker_args = lws["workerTemplate"]["spec"]["containers"][0]["args"]
    assert arg(tuple(worker_args), "--node-rank") == "$(LWS_WORKER_INDEX)"
    assert arg(tuple(worker_args), "--master-addr") == "$(LWS_LEADER_ADDRESS)"


def test_k8s_validation_catches_a_broken_manifest() -> None:
    manifests = k8s.single_node(plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", tp=8))
    manifests[1]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(UsageError, match="not valid Kubernetes"):
        k8s.validate(manifests)
    with pytest.raises(UsageError, match="local model folder"):
        k8s.single_node(plan_for())


def test_the_recipes_multi_node_strategies_pick_the_layout() -> None:
    from glmkit.plan.cluster import strategy_layout

    assert strategy_layout("multi_node_tp", "mp", None, None, 8, 2) == ("mp", 16, 1)
    assert strategy_layout("multi_node_tp_pp", "mp", None, None, 8, 2) == ("mp", 8, 2)
    assert strategy_layout("multi_node_dep", "mp", None, None, 8, 2) == ("dp", 1, 1)
    base = plan_for(vendor="cuda", model="zai-org/GLM-5-FP8", gpu="h100", tp=1, nodes="2",
                    strategy="multi_node_tep")
    assert "--enable-expert-parallel" in base.serve_args
    engine, tp, pp = strategy_layout("multi_node_tep", "mp", None, None, 8, 2)
    cluster = build_cluster(base, parse_nodes(REMOTE), engine, tp=tp, pp=pp, gpus_per_node=8)
    head = cluster.node_args[cluster.nodes[0].name]
    assert arg(head, "--tensor-parallel-size") == "16"
    assert "--enable-expert-parallel" in head


def test_nodes_count_is_ascii_digits_and_bounded() -> None:
    from glmkit.host.nodes import parse_nodes_setting

    assert parse_nodes_setting("00002").count == 2
    # "²" passed str.isdigit() and then broke int(); 5,000 digits broke int() too.
    for bad in ("²", "٣", "1" * 5000, "9" * 10):
        with pytest.raises(UsageError, match="--nodes") as err:
            parse_nodes_setting(bad)
        assert len(str(err.value)) < 200


def test_a_nodes_host_is_printable_ascii_with_a_real_port() -> None:
    # Taken as DOCKER_HOST and printed in messages: an escape sequence, a newline or a
    # port past 65535 passed before.
    for host in ("ssh://gpu1/\x1b[31mX", "tcp://gpu1:2375/\n$(id)", "ssh://gpu1:99999999",
                 "ssh://gpu1:-1", "ssh://gpu1/" + "a" * 300, "ssh://gpü1"):
        with pytest.raises(UsageError, match="--nodes") as err:
            parse_nodes(f"head={host},w1=ssh://gpu2")
        assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
    assert parse_nodes("head=ssh://root@gpu1:22,w1=gpu2")[0].docker_host == "ssh://root@gpu1:22"
