"""The router image's gate: with a key, every route but the health probes needs it.

vllm-router checks no client key, and its admin routes (/add_worker, /remove_worker,
/workers/{url}, /flush_cache) are outside /v1: a gate that only guarded /v1 let anyone
add a worker and so receive the prompts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

GATE = Path(__file__).resolve().parents[2] / "docker" / "router" / "gate.py"


def _gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("router_gate", GATE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gate = _gate()


@pytest.mark.parametrize("path", ["/add_worker", "/remove_worker", "/workers/http:%2F%2Fx",
                                  "/flush_cache", "/list_workers", "/get_loads", "/metrics",
                                  "/v1/chat/completions", "/v1/messages", "/generate",
                                  "/health/../add_worker", "//add_worker", "/health%2F..",
                                  "/HEALTH", "/health/", ""])
def test_every_route_but_the_probes_needs_the_key(path: str) -> None:
    assert gate.needs_key(path)


@pytest.mark.parametrize("path", ["/health", "/liveness", "/readiness"])
def test_the_health_probes_are_open(path: str) -> None:
    assert not gate.needs_key(path)


@given(st.text(max_size=40))
def test_only_the_three_probe_paths_are_open(path: str) -> None:
    assert gate.needs_key(path) == (path not in {"/health", "/liveness", "/readiness"})


def test_the_key_is_accepted_as_bearer_or_x_api_key_and_nothing_else() -> None:
    assert gate.authorized({"authorization": "Bearer k3y"}, "k3y")
    assert gate.authorized({"authorization": "bearer k3y"}, "k3y")
    assert gate.authorized({"x-api-key": "k3y"}, "k3y")
    assert not gate.authorized({"authorization": "Bearer wrong"}, "k3y")
    assert not gate.authorized({"authorization": "Basic k3y"}, "k3y")
    assert not gate.authorized({}, "k3y")


# --- #27, M5: without a key the admin routes are refused, the client routes pass ----------

@pytest.mark.parametrize("path", ["/add_worker", "/remove_worker", "/workers/http%3A%2F%2Fx",
                                  "/flush_cache", "/v1/../add_worker", "//add_worker",
                                  "/v1/chat/completions/../../add_worker", "/"])
def test_without_a_key_the_admin_routes_are_refused(path: str) -> None:
    assert gate.refusal(path, {}, "") == 403


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/models",
                                  "/v1/responses", "/v1/messages", "/health"])
def test_without_a_key_the_client_routes_pass(path: str) -> None:
    assert gate.refusal(path, {}, "") is None


def test_with_a_key_every_route_but_the_probes_needs_it() -> None:
    assert gate.refusal("/v1/models", {}, "k") == 401
    assert gate.refusal("/add_worker", {"authorization": "Bearer k"}, "k") is None
    assert gate.refusal("/health", {}, "k") is None


def test_the_gate_always_fronts_the_router() -> None:
    """It used to exec vllm-router in its place without a key: the admin routes open."""
    assert "execvp" not in GATE.read_text()
