"""#29: a cluster's nodes and the pd_cluster pools compose their commands from the serve
plan's layers (`ServeCommand`), never by taking the one server's argv apart."""

from __future__ import annotations

from typing import Any

import pytest

from glmkit.errors import UsageError
from glmkit.host.facts import read_host_facts
from glmkit.host.settings import resolve_settings
from glmkit.knowledge.recipes import load_book
from glmkit.plan.cluster import ClusterPlan
from glmkit.plan.deployment import AnyPlan, plan_deployment
from glmkit.plan.pd import PdPlan
from glmkit.plan.serve import ServePlan
from glmkit.vllm_args import flag_value

from .helpers import NO_GPU, gpus

ENV = {"GLMKIT_HOME": "/tmp/glmkit-test", "HF_HOME": "/tmp/glmkit-test-hf"}
KV = '{"kv_connector":"OffloadingConnector","kv_role":"kv_both"}'
# The user's own flags: a size the deployment owns, a KV connector, and two plain ones.
USER = ("-tp", "2", "--kv-transfer-config", KV, "--max-num-seqs", "8", "--seed", "1")
H200 = gpus("cuda", 8, 143771, "NVIDIA H200")


def deployment(hw: Any = NO_GPU, extra: tuple[str, ...] = USER, **flags: Any) -> AnyPlan:
    settings, _ = resolve_settings({**flags, "extra_args": extra}, {}, ENV)
    return plan_deployment(settings, read_host_facts(settings, ENV, hw), load_book(ENV))


def count(args: tuple[str, ...] | list[str], flag: str) -> int:
    return sum(a == flag or a.startswith(f"{flag}=") for a in args)


def test_the_one_server_runs_every_layer_the_users_last() -> None:
    plan = deployment(vendor="cpu")
    assert isinstance(plan, ServePlan)
    command = plan.command
    assert plan.serve_args == command.argv()
    assert plan.serve_args[:4] == (command.model_ref, "--served-model-name",
                                   plan.served_model_name, "--host")
    # The user's size wins on one server; their KV connector is theirs to run there.
    assert command.parallel == ("--tensor-parallel-size", "2")
    assert flag_value(plan.serve_args, "--tensor-parallel-size") == "2"
    assert flag_value(plan.serve_args, "--kv-transfer-config") == KV
    assert plan.serve_args[-6:-2] == ("--max-num-seqs", "8", "--seed", "1")
    assert count(plan.serve_args, "--tensor-parallel-size") == 1


def test_cluster_nodes_take_the_layers_with_the_clusters_own_sizes() -> None:
    cluster = deployment(vendor="cpu", extra=USER[2:], nodes="2", engine="dp")
    assert isinstance(cluster, ClusterPlan)
    for args in cluster.node_args.values():
        assert count(args, "--tensor-parallel-size") == 1
        assert flag_value(args, "--tensor-parallel-size") == "1"
        assert flag_value(args, "--data-parallel-size") == "2"
        assert flag_value(args, "--kv-transfer-config") == KV  # the user's, kept
        assert flag_value(args, "--seed") == "1" and count(args, "--host") == 1
    real = deployment(H200, USER[2:], model="zai-org/GLM-4.6-FP8", host="10.0.0.1", port=9000,
                      nodes="head=ssh://10.0.0.1,w1=ssh://10.0.0.2")
    assert isinstance(real, ClusterPlan)
    head = real.node_args["head"]
    # The host network: vLLM itself listens where the user said, once.
    assert (flag_value(head, "--host"), flag_value(head, "--port")) == ("10.0.0.1", "9000")
    assert count(head, "--host") == count(head, "--port") == 1
    assert flag_value(head, "--tensor-parallel-size") == "8"


def test_pools_take_the_layers_with_their_own_sizes_and_kv_transfer() -> None:
    plan = deployment(H200, USER[4:], model="zai-org/GLM-4.6-FP8", strategy="pd_cluster")
    assert isinstance(plan, PdPlan)
    for pool in plan.pools:
        assert pool.args[0] == plan.base.command.model_ref
        assert count(pool.args, "--tensor-parallel-size") == 1
        assert flag_value(pool.args, "--tensor-parallel-size") == str(pool.tensor_parallel)
        assert "NixlConnector" in (flag_value(pool.args, "--kv-transfer-config") or "")
        assert count(pool.args, "--host") == count(pool.args, "--port") == 1
        assert pool.args[-4:] == ("--max-num-seqs", "8", "--seed", "1")


def test_pools_leave_out_a_users_flag_the_image_lacks_as_the_plan_says() -> None:
    """The plan noted `dropped --disable-log-requests` (vLLM 0.17 removed it) and left it
    out of the one server's command, while both pools, which re-read the user's flags,
    were started with it."""
    plan = deployment(vendor="cpu", strategy="pd_cluster",
                      extra=("--disable-log-requests", "--seed", "1"))
    assert isinstance(plan, PdPlan)
    assert any(n.startswith("dropped --disable-log-requests") for n in plan.base.notes)
    for pool in plan.pools:
        assert "--disable-log-requests" not in pool.args
        assert flag_value(pool.args, "--seed") == "1"


@pytest.mark.parametrize(("extra", "flags", "named"), [
    (("-tp", "2"), {"nodes": "2"}, "--tensor-parallel-size"),
    (("--pipeline-parallel-size=3",), {"nodes": "2"}, "--pipeline-parallel-size"),
    (("--node-rank", "1"), {"nodes": "2"}, "--node-rank"),
    (("--tensor_parallel_size", "2"), {"strategy": "pd_cluster"}, "--tensor-parallel-size"),
    (("--kv-transfer-config", KV), {"strategy": "pd_cluster"}, "--kv-transfer-config"),
])
def test_a_size_the_deployment_sets_is_refused_after_the_dashes(
        extra: tuple[str, ...], flags: dict[str, str], named: str) -> None:
    """A cluster overrode the user's -pp and dropped their -tp without a word, and the
    pools dropped their --kv-transfer-config: now one line names the option to use."""
    with pytest.raises(UsageError, match=f"sets {named} itself: leave it out"):
        deployment(vendor="cpu", extra=extra, **flags)
