"""pd_cluster: the plan of two pools and a router, its compose data and its inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.host.facts import read_host_facts
from glmkit.host.hardware import Hardware
from glmkit.host.settings import Settings, resolve_settings
from glmkit.knowledge.recipes import load_book
from glmkit.plan.pd import PdPlan, kv_transfer, plan_pd
from glmkit.render.compose import dump
from glmkit.render.pd_compose import pd_compose
from glmkit.run.lifecycle import start_secrets
from tests.unit.helpers import NO_GPU, gpus

ENV = {"GLMKIT_HOME": "/tmp/glmkit-test", "HF_HOME": "/tmp/glmkit-test-hf"}
H200 = gpus("cuda", 8, 143771, "NVIDIA H200")


def pd(hw: Hardware = NO_GPU, **settings: Any) -> PdPlan:
    s = Settings(strategy="pd_cluster", project="pdt", **settings)
    return plan_pd(s, read_host_facts(s, ENV, hw), load_book(ENV))


def flag(args: tuple[str, ...] | list[str], name: str) -> str:
    return args[list(args).index(name) + 1]


def test_cpu_pools_move_kv_over_nixl_in_host_memory() -> None:
    plan = pd(vendor="cpu")
    prefill, decode = plan.pools
    assert (prefill.role, decode.role) == ("prefill", "decode")
    for pool, role in ((prefill, "kv_producer"), (decode, "kv_consumer")):
        config = json.loads(flag(pool.args, "--kv-transfer-config"))
        assert config == {"kv_connector": "NixlConnector", "kv_role": role,
                          "kv_load_failure_policy": "fail", "kv_buffer_device": "cpu"}
        assert pool.env["UCX_TLS"] == "tcp,self"
        assert pool.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == pool.service
    # The cores split between the pools by vLLM's OMP binding, not a cpuset (NIXL pins its
    # KV thread to the host's last core).
    assert (prefill.env["VLLM_CPU_OMP_THREADS_BIND"], decode.env["VLLM_CPU_OMP_THREADS_BIND"]) \
        == ("0", "1")
    # CUDA graphs do not exist on CPU: the decode pool's compilation config is left out.
    assert "--compilation-config" not in decode.args
    assert plan.base.image.ref == "glmkit/vllm-cpu-nixl:0.32.0"
    assert any("NixlConnector" in note for note in plan.base.notes)
    assert plan.router_args[plan.router_args.index("--prefill") + 1] == "http://prefill:8000"
    assert plan.router_args[plan.router_args.index("--decode") + 1] == "http://decode:8000"


def test_only_the_router_publishes_and_secrets_stay_names() -> None:
    plan = pd(vendor="cpu", port=8310)
    (_name, data), = pd_compose(plan).items()
    text = dump(data)
    services = yaml.safe_load(text)["services"]
    assert set(services) == {"prefill", "decode", "router"}
    assert [s for s, svc in services.items() if "ports" in svc] == ["router"]
    assert services["router"]["ports"][0]["published"] == "8310"
    assert services["router"]["ports"][0]["host_ip"] == "127.0.0.1"
    # The router's key is the deployment's: Compose interpolates it from VLLM_API_KEY.
    assert services["router"]["environment"] == ["OPENAI_API_KEY=${VLLM_API_KEY:-}"]
    assert services["router"]["read_only"] is True
    for pool in ("prefill", "decode"):
        assert "VLLM_API_KEY" in services[pool]["environment"]
        assert services[pool]["labels"]["io.glmkit.role"] == pool
    assert services["router"]["labels"]["io.glmkit.role"] == "router"


def test_cpu_pools_hide_the_numa_nodes_from_nixls_thread_binding() -> None:
    # vLLM's NIXL worker moves its thread (the one running the model) to the last core of
    # each NUMA node it finds: on 2 cores both pools computed on the decode pool's core.
    (_name, data), = pd_compose(pd(vendor="cpu")).items()
    services = yaml.safe_load(dump(data))["services"]
    for pool in ("prefill", "decode"):
        assert services[pool]["tmpfs"] == ["/sys/devices/system/node:ro"]
    assert "tmpfs" not in services["router"]
    # GPU pools keep their NUMA view (vLLM only moves the thread on CPU).
    (_name, gpu), = pd_compose(pd(H200, vendor="cuda")).items()
    assert not any("tmpfs" in svc for svc in gpu["services"].values())


def test_the_router_key_comes_from_the_deployments_key_never_the_users_openai_key() -> None:
    """It was OPENAI_API_KEY by name: any `docker compose up` of the file outside `invoke
    up` (by hand, or a later glmkit that forgot to set it) gave the router the caller's
    own OpenAI key to send to the pools. The file now says where the value comes from."""
    (_name, data), = pd_compose(pd(vendor="cpu")).items()
    text = dump(data)
    assert "OPENAI_API_KEY=${VLLM_API_KEY:-}" in text
    assert text.count("${") == text.count("$${") + 1  # the one interpolation glmkit means
    assert "OPENAI_API_KEY" not in start_secrets(pd(vendor="cpu"), {"VLLM_API_KEY": "k"}, {})


def test_text_that_looks_like_the_router_key_entry_stays_escaped() -> None:
    # Only glmkit's own entry is left for Compose; the same words from a user are text.
    plan = pd(vendor="cpu", extra_args=("--chat-template-content-format",
                                        "OPENAI_API_KEY=${VLLM_API_KEY:-}"))
    (_name, data), = pd_compose(plan).items()
    services = yaml.safe_load(dump(data))["services"]
    assert "OPENAI_API_KEY=$${VLLM_API_KEY:-}" in services["decode"]["command"]


def test_one_gpu_node_splits_in_half() -> None:
    plan = pd(gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air-FP8")
    prefill, decode = plan.pools
    assert (prefill.gpu_ids, decode.gpu_ids) == (("0", "1", "2", "3"), ("4", "5", "6", "7"))
    assert flag(prefill.args, "--tensor-parallel-size") == "4"
    assert flag(decode.args, "--compilation-config") == '{"cudagraph_mode":"FULL_DECODE_ONLY"}'
    assert "kv_buffer_device" not in flag(decode.args, "--kv-transfer-config")
    services = pd_compose(plan)["pdt"]["services"]
    devices = services["decode"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["device_ids"] == ["4", "5", "6", "7"]


def test_sizes_from_flags() -> None:
    plan = pd(gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air-FP8",
              prefill_gpus=4, decode_gpus=2)
    assert [p.gpu_ids for p in plan.pools] == [tuple("0123"), ("4", "5")]


def test_glm52_fp8_needs_a_node_per_pool_on_h200() -> None:
    with pytest.raises(UsageError, match="every prefill server holds the whole model"):
        pd(H200, vendor="cuda", model="zai-org/GLM-5.2-FP8")
    plan = pd(H200, vendor="cuda", model="zai-org/GLM-5.2-FP8", nodes="2")
    assert [(p.service, p.tensor_parallel, p.gpu_ids) for p in plan.pools] == [
        ("prefill", 8, tuple("01234567")), ("decode", 8, tuple(str(i) for i in range(8, 16)))]


def test_real_nodes_listen_on_their_own_address() -> None:
    plan = pd(H200, vendor="cuda", model="zai-org/GLM-5.2-FP8", port=9000,
              nodes="head=ssh://10.0.0.1,w1=ssh://10.0.0.2")
    prefill, decode = plan.pools
    assert (flag(prefill.args, "--host"), flag(prefill.args, "--port")) == ("10.0.0.1", "8001")
    assert (flag(decode.args, "--host"), flag(decode.args, "--port")) == ("10.0.0.2", "8002")
    assert decode.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "10.0.0.2"
    assert "http://10.0.0.2:8002" in plan.router_args
    files = pd_compose(plan)
    assert set(files) == {"pdt-head", "pdt-w1"}
    assert set(files["pdt-head"]["services"]) == {"prefill", "router"}
    assert all(svc["network_mode"] == "host" for f in files.values()
               for name, svc in f["services"].items() if name != "router")
    # #27, M5: the router is published on --host:--port from a bridge network, so
    # vllm-router's inner port (18000, behind the gate) is never on the head's host network.
    router = files["pdt-head"]["services"]["router"]
    assert "network_mode" not in router
    assert (router["ports"][0]["published"], router["ports"][0]["host_ip"]) == \
        ("9000", "127.0.0.1")
    assert (flag(plan.router_args, "--host"), flag(plan.router_args, "--port")) == \
        ("0.0.0.0", "8000")


@pytest.mark.parametrize("settings, error", [
    ({"router_policy": "round_robin; rm -rf /"}, "--router-policy"),
    ({"router_policy": "kv_aware"}, "--router-policy"),
    ({"prefill_gpus": 7, "decode_gpus": 7}, "do not fit"),
    ({"prefill_gpus": 8}, "do not fit"),
    ({"nodes": "2", "prefill_gpus": 4}, "whole nodes"),
    ({"nodes": "head=ssh://10.0.0.1,w1=ssh://10.0.0.2", "port": 8002}, "port the pools use"),
])
def test_hostile_pd_settings_are_refused(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(UsageError, match=error):
        pd(gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air-FP8", **settings)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1e9999"])
def test_pool_sizes_pass_the_settings_ranges(value: str) -> None:
    with pytest.raises(UsageError):
        resolve_settings({"prefill_gpus": value}, {}, {})


@pytest.mark.parametrize("config", [
    '{"kv_connector":"NixlConnector","kv_role":"kv_producer",'
    '"kv_connector_module_path":"evil.mod"}',
    '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_producer"}',
    '{"kv_connector":"NixlConnector","kv_role":"kv_producer","kv_ip":"203.0.113.9"}',
    '{"kv_connector":"NixlConnector","kv_role":1}',
    "not json", "[]",
])
def test_a_recipes_kv_transfer_config_is_checked(config: str) -> None:
    with pytest.raises(UsageError, match="not one glmkit runs"):
        kv_transfer(config, "prefill", on_cpu=False)


def test_a_recipe_cannot_point_the_side_channel_elsewhere(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    book = load_book(ENV)
    strategy = book.strategies["pd_cluster"]
    hostile = {**strategy, "prefill": {**strategy["prefill"], "env": {
        "VLLM_NIXL_SIDE_CHANNEL_HOST": "203.0.113.9", "VLLM_PLUGINS": "evil"}}}
    monkeypatch.setitem(book.strategies, "pd_cluster", hostile)
    s = Settings(strategy="pd_cluster", project="pdt", vendor="cpu")
    plan = plan_pd(s, read_host_facts(s, ENV, NO_GPU), book)
    assert plan.pools[0].env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "prefill"
    assert "VLLM_PLUGINS" not in plan.pools[0].env


def test_a_model_whose_recipe_offers_no_pd_is_refused() -> None:
    with pytest.raises(UsageError, match="does not offer pd_cluster"):
        pd(gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5V-FP8")


def test_a_synced_models_pd_overrides_reach_both_pools(tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream GLM-5.3-Flash: the KV layouts both pools must share, the hybrid KV-cache
    manager flag per pool; its --compilation-config (user-only) left out with a note."""
    from glmkit.knowledge import recipes
    from glmkit.knowledge.recipes import sync
    from tests.unit.test_recipe_upstream import env_for, upstream_copy

    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)
    env = env_for(tmp_path)
    sync(str(upstream_copy(tmp_path)), env)
    s = Settings(strategy="pd_cluster", project="pdt", vendor="cuda",
                 model="zai-org/GLM-5.3-Flash")
    plan = plan_pd(s, read_host_facts(s, env, gpus("cuda", 8, 143771, "NVIDIA H200")),
                   load_book(env))
    for pool in plan.pools:
        assert pool.env["VLLM_KV_CACHE_LAYOUT"] == "HND"
        assert pool.env["VLLM_SSM_CONV_STATE_LAYOUT"] == "DS"
        assert "--no-disable-hybrid-kv-cache-manager" in pool.args
    assert flag(plan.pools[1].args, "--max-num-seqs") == "512"
    assert "--compilation-config" not in plan.pools[0].args


def test_pools_on_real_nodes_need_an_api_key(tmp_path: Any) -> None:
    # Review of #21, 1: the router binds 127.0.0.1 but the pools listen on their nodes'
    # addresses (and NIXL side channels): no key must be refused before anything starts.
    from rich.console import Console

    from glmkit.run import deploy

    plan = pd(vendor="cpu", nodes="head=ssh://10.0.0.5,w1=ssh://10.0.0.6")
    assert plan.exposed() == [("prefill", "10.0.0.5"), ("decode", "10.0.0.6")]
    with pytest.raises(UsageError, match="decode on 10.0.0.6.*API key"):
        deploy.up(plan, None, tmp_path, tmp_path, Console(), dict(ENV))
    assert not list(tmp_path.iterdir())  # refused before a file was written
    # One machine: the pools listen inside the project's network only.
    assert pd(vendor="cpu").exposed() == []


def test_a_synced_pd_block_cannot_override_glmkits_or_the_users_flags(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review of #21, 3: `-tp 2` and `--tensor_parallel_size 64` passed as other spellings
    # of an owned flag, and the role block came after the user's own flags.
    from glmkit.knowledge import recipes
    from glmkit.knowledge.recipes import sync
    from tests.unit.test_recipe_upstream import env_for, upstream_copy

    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)
    env = env_for(tmp_path)
    copy = upstream_copy(tmp_path)
    path = copy / "strategies" / "pd_cluster.yaml"
    data = yaml.safe_load(path.read_text())
    data["prefill"]["vllm_args"] += ["-tp", "2", "--gpu-memory-utilization", "0.99",
                                     "--max-num-seqs", "1", "--compilation-config", "{}"]
    data["decode"]["vllm_args"] += ["--tensor_parallel_size", "64"]
    path.write_text(yaml.safe_dump(data))
    sync(str(copy), env)
    s = Settings(strategy="pd_cluster", project="pdt", vendor="cuda", gpu_count=8,
                 model="zai-org/GLM-4.6-FP8", gpu_memory_utilization=0.85,
                 extra_args=("--max-num-seqs", "64"), extra_args_source="flag")
    plan = plan_pd(s, read_host_facts(s, env, H200), load_book(env))
    for pool in plan.pools:
        assert [a for a in pool.args if "tensor" in a or a == "-tp"] == \
            ["--tensor-parallel-size"]
        assert flag(pool.args, "--tensor-parallel-size") == "4"
        assert flag(pool.args, "--gpu-memory-utilization") == "0.85"
        assert flag(pool.args, "--max-num-seqs") == "64"
    # The policy's "left out" note for the synced prefill block is shown, not dropped.
    assert any("left out --compilation-config" in n for n in plan.base.notes)


def test_pool_probes_reach_the_address_the_pool_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Review of #21, 7: on real nodes a pool binds its node's IP, so a probe of
    # 127.0.0.1 (compose health check, the lifecycle's probe) could never succeed.
    import urllib.request
    from types import SimpleNamespace

    from glmkit.endpoints import IN_CONTAINER_PROBE
    from glmkit.run import lifecycle

    plan = pd(vendor="cpu", nodes="head=ssh://10.0.0.5,w1=ssh://10.0.0.6")
    decode = plan.pools[1]
    assert "GLMKIT_HOST=10.0.0.6" in pd_compose(plan)["pdt-w1"]["services"]["decode"][
        "environment"]
    argvs: list[list[str]] = []
    monkeypatch.setattr(lifecycle, "run", lambda argv, **kw: argvs.append(argv)
                        or SimpleNamespace(returncode=0))
    part = plan.parts()[1]
    assert part.service == decode.service
    assert lifecycle.probe(plan, lifecycle.PartState(part, SimpleNamespace(name="c"),
                                                     "running", 0, 0))
    env = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in argvs[0]
           if w.startswith("GLMKIT_")}
    # The probe itself, run as the container runs it, with what it was given.
    seen: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda req, timeout: seen.append(getattr(req, "full_url", req)))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exec(IN_CONTAINER_PROBE, {})
    assert seen[0] == "http://10.0.0.6:8002/health"
    assert seen[1] == "http://10.0.0.6:8002/v1/chat/completions"
    # One machine: the pools bind every interface of their container; loopback reaches it.
    local = pd(vendor="cpu")
    assert not any(w.startswith("GLMKIT_HOST") for s in pd_compose(local)["pdt"]["services"]
                   .values() for w in s.get("environment", []))
    monkeypatch.setenv("GLMKIT_HOST", "::1")
    exec(IN_CONTAINER_PROBE, {})
    assert seen[2] == "http://[::1]:8002/health"
