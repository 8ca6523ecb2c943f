from __future__ import annotations

import pytest

from glmkit.errors import UsageError
from glmkit.measure.point import bench_argv
from glmkit.measure.workloads import (
    RECIPE_BATCHES,
    WORKLOADS,
    Point,
    parse_batches,
    resolve_workload,
    sweep_points,
)
from glmkit.run.server import RunningServer, server_from_container

V_MODEL = "zai-org/GLM-4.5V-FP8"
TARGET = RunningServer(container="c", served_model=V_MODEL, model_ref=V_MODEL, max_model_len=65536,
                vendor="cuda", image="img", serve_args=(),
                base_url="http://127.0.0.1:8000")


def test_recipe_workloads() -> None:
    shapes = {name: (w.input_len, w.output_len) for name, w in WORKLOADS.items()}
    assert shapes["prompt-heavy"] == (8000, 1000)
    assert shapes["decode-heavy"] == (1000, 8000)
    assert shapes["balanced"] == (1000, 1000)
    assert all(WORKLOADS[n].ignore_eos for n in ("prompt-heavy", "decode-heavy", "balanced"))


def test_custom_and_overridden_lengths() -> None:
    assert resolve_workload("custom", 64, 32).input_len == 64
    assert resolve_workload("balanced", output_len=50).output_len == 50
    with pytest.raises(UsageError, match="needs --input-len"):
        resolve_workload("custom")
    with pytest.raises(UsageError, match="Unknown workload 'chatty'"):
        resolve_workload("chatty")


def test_batches() -> None:
    assert parse_batches("1,16,64") == (1, 16, 64)
    assert parse_batches("recipe") == RECIPE_BATCHES == (1, 16, 32, 64, 128, 256, 512)
    for bad in ("1,x", "0", "4,4", ""):
        with pytest.raises(UsageError):
            parse_batches(bad)


def test_sweep_modes() -> None:
    prompts = sweep_points((1, 16), "prompts", request_rate="10000")
    assert [(p.num_prompts, p.max_concurrency) for p in prompts] == [(1, None), (16, None)]
    concurrency = sweep_points((1, 8), "concurrency", num_prompts=100)
    assert [(p.num_prompts, p.max_concurrency) for p in concurrency] == [(100, 1), (100, 8)]
    assert sweep_points((8,), "concurrency")[0].num_prompts == 32


def values(argv: list[str]) -> dict[str, str]:
    """`--option=value` words of an argv, by option."""
    return dict(word.split("=", 1) for word in argv if word.startswith("--") and "=" in word)


def test_random_argv_follows_the_recipe() -> None:
    argv = bench_argv(TARGET, WORKLOADS["prompt-heavy"],
                      Point(batch=16, num_prompts=16, max_concurrency=None, request_rate="10000"),
                      "r.json")
    assert values(argv)["--dataset-name"] == "random"
    assert values(argv)["--random-input-len"] == "8000"
    assert values(argv)["--num-prompts"] == "16"
    assert "--ignore-eos" in argv and "--max-concurrency" not in values(argv)


def test_vision_argv_and_fallback() -> None:
    point = Point(batch=1, num_prompts=1000, max_concurrency=1, request_rate="inf")
    argv = bench_argv(TARGET, WORKLOADS["vision"], point, "r.json")
    assert values(argv)["--backend"] == "openai-chat"
    assert values(argv)["--endpoint"] == "/v1/chat/completions"
    assert values(argv)["--dataset-path"] == "lmarena-ai/VisionArena-Chat"
    assert values(argv)["--max-concurrency"] == "1"
    fallback = bench_argv(TARGET, WORKLOADS["vision"], point, "r.json", dataset="random-mm")
    assert values(fallback)["--dataset-name"] == "random-mm"
    assert "--ignore-eos" not in fallback


class _Container:
    """What `server_from_container` reads of a container: name, labels and inspect data."""

    name = "glmkit-vllm-1"

    def __init__(self, host_ip: str) -> None:
        from glmkit.plan.serve import LABEL

        self.labels = {f"{LABEL}.{k}": v for k, v in {
            "served-model": "m", "model-ref": "/models/m", "max-model-len": "4096",
            "vendor": "cpu", "image": "img", "port": "8100"}.items()}
        self.attrs = {"Config": {"Env": [], "Cmd": ["/models/m"]}, "HostConfig": {
            "PortBindings": {"8000/tcp": [{"HostIp": host_ip, "HostPort": "8100"}]}}}


@pytest.mark.parametrize(("host_ip", "url"), [("192.168.7.2", "http://192.168.7.2:8100"),
                                              ("::1", "http://[::1]:8100"),
                                              ("0.0.0.0", "http://127.0.0.1:8100")])
def test_bench_probes_where_the_server_is_published(host_ip: str, url: str) -> None:
    assert server_from_container(_Container(host_ip)).base_url == url
