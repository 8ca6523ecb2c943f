"""Container labels: the plan writes them, the server and status read them back, through
one ServerLabels."""

from __future__ import annotations

import pytest

from glmkit.labels import LABEL, MANAGED, ServerLabels, label_key
from glmkit.run.server import server_from_container

from .helpers import plan_for


def test_the_plan_writes_the_labels_it_always_wrote() -> None:
    plan = plan_for(vendor="cpu", model="zai-org/GLM-4.5-Air", port=8123)
    assert list(plan.labels) == [f"{LABEL}.{k}" for k in (
        "managed", "version", "project", "model", "vendor", "port", "image", "served-model",
        "model-ref", "max-model-len", "strategy")]
    assert plan.labels[MANAGED] == "true" and plan.labels[f"{LABEL}.port"] == "8123"
    read = ServerLabels.from_labels(plan.labels)
    assert read.to_labels() == plan.labels
    assert read.max_model_len == plan.max_model_len and read.port == 8123
    assert read.served_model == plan.served_model_name and read.node is None


def test_a_cluster_nodes_labels_read_back() -> None:
    labels = {**plan_for().labels, label_key("node"): "w1", label_key("node_rank"): "1",
              label_key("nodes"): "2", label_key("engine"): "ray"}
    read = ServerLabels.from_labels(labels)
    assert (read.node, read.node_rank, read.nodes, read.engine) == ("w1", 1, 2, "ray")
    assert read.to_labels() == labels


class _Container:
    name = "old"

    def __init__(self, labels: dict[str, str], published: bool = False) -> None:
        self.labels = labels
        bindings = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]} \
            if published else None
        self.attrs = {"Config": {"Env": ["VLLM_API_KEY=k"], "Cmd": ["m"]},
                      "HostConfig": {"PortBindings": bindings}}


def test_a_container_without_what_bench_needs_is_refused_by_label_name() -> None:
    from glmkit.errors import UsageError

    labels = plan_for().labels
    for missing in ("served-model", "max-model-len"):
        broken = {k: v for k, v in labels.items() if k != f"{LABEL}.{missing}"}
        with pytest.raises(UsageError, match=f"missing label '{LABEL}.{missing}'"):
            server_from_container(_Container(broken))
    with pytest.raises(UsageError, match="max-model-len"):
        server_from_container(_Container({**labels, label_key("max_model_len"): "lots"}))
    no_port = {k: v for k, v in labels.items() if k != label_key("port")}
    with pytest.raises(UsageError, match="port"):
        server_from_container(_Container(no_port))
    assert server_from_container(_Container(no_port, published=True)).base_url == \
        "http://127.0.0.1:9000"
    server = server_from_container(_Container(labels))
    assert server.base_url.endswith(f":{labels[label_key('port')]}")
    assert server.api_key == "k"


def test_the_model_facts_travel_from_the_plan_to_the_running_server() -> None:
    from glmkit.knowledge.catalog import TINY_MODEL_ID, TINY_VISION_ID
    from glmkit.plan.model_facts import ModelFacts

    for model, facts in ((TINY_MODEL_ID, ModelFacts(tiny="text", exact_answers=True)),
                         (TINY_VISION_ID, ModelFacts(vision=True, tiny="vision")),
                         ("zai-org/GLM-4.5-Air", ModelFacts())):
        plan = plan_for(vendor="cpu", model=model)
        assert plan.facts == facts, model
        assert server_from_container(_Container(plan.labels)).facts == facts, model
    # An older glmkit's server (no such labels), or a label not ours to read: no facts.
    labels = {**plan_for().labels, label_key("tiny"): "huge",
              label_key("exact_answers"): "yes"}
    assert server_from_container(_Container(labels)).facts == ModelFacts()


def test_only_field_names_make_keys() -> None:
    assert label_key("node_rank") == f"{LABEL}.node-rank"
    with pytest.raises(KeyError):
        label_key("nodes_rank")
