"""The trust boundary against the real Docker engine and Compose: what a container is
created with is exactly the intended argv, whatever text went in, with secrets in the
environment of `docker compose`; and the policy's table of vLLM's options is the image's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmkit.errors import UsageError
from glmkit.host.settings import resolve_settings
from glmkit.knowledge.images import CPU_IMAGE
from glmkit.render.compose import write_compose
from tests.unit.helpers import NO_GPU, plan_here

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hf_SECRETVALUE_5678"
pytestmark = pytest.mark.usefixtures("compose_cli")


def _image_present() -> bool:
    return subprocess.run(["docker", "image", "inspect", CPU_IMAGE.ref], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not _image_present():
        if os.environ.get("CI"):
            pytest.fail(f"{CPU_IMAGE.ref} is needed in CI (scripts/setup.sh builds it)")
        pytest.skip(f"{CPU_IMAGE.ref} not built")
    folder = tmp_path_factory.mktemp("policy")
    (folder / "hf").mkdir()
    yield folder


def _created_command(path: Path, project: str) -> list[str]:
    """`docker compose create` with secrets in its environment, then the container's
    command as the engine holds it."""
    env = {**os.environ, "HF_TOKEN": SECRET, "VLLM_API_KEY": SECRET}
    base = ["docker", "compose", "-f", str(path), "-p", project]
    try:
        subprocess.run([*base, "create", "--no-build", "--pull", "never"], env=env,
                       check=True, capture_output=True, text=True, timeout=120)
        ids = subprocess.run([*base, "ps", "-a", "-q"], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        inspect = json.loads(subprocess.run(["docker", "inspect", *ids], check=True,
                                            capture_output=True, text=True).stdout)
        config = inspect[0]["Config"]
        assert SECRET not in json.dumps(config["Cmd"]) + json.dumps(config["Labels"])
        return list(config["Cmd"])
    finally:
        subprocess.run([*base, "down", "-v", "-t", "0"], env=env, capture_output=True,
                       check=False, timeout=120)


WORD = st.text(alphabet=st.sampled_from(list("$ {}()'\"\\=_-\naZ9é")), min_size=1,
               max_size=16)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=WORD)
def test_created_container_runs_exactly_the_intended_argv(workdir: Path, value: str) -> None:
    env = {"GLMKIT_HOME": str(workdir / "kit"), "HF_HOME": str(workdir / "hf")}
    words = ("--chat-template-content-format", f"x{value}")
    try:
        settings_, _ = resolve_settings({"extra_args": words, "project": "glmkit-policy"},
                                        {}, env)
        plan = plan_here(settings_, NO_GPU, env)
    except UsageError:
        return
    path = write_compose(plan, workdir)
    assert _created_command(path, plan.project) == list(plan.serve_args)


def test_interpolation_syntax_in_every_source_stays_literal(workdir: Path) -> None:
    env = {"GLMKIT_HOME": str(workdir / "kit"), "HF_HOME": str(workdir / "hf")}
    settings_, _ = resolve_settings(
        {"extra_args": ("--chat-template-content-format", "${HF_TOKEN}",
                        "--speculative-config", '{"method": "ngram", "x": "$VLLM_API_KEY"}'),
         "project": "glmkit-policy"}, {}, env)
    plan = plan_here(settings_, NO_GPU, env)
    command = _created_command(write_compose(plan, workdir), plan.project)
    assert "${HF_TOKEN}" in command
    assert '{"method": "ngram", "x": "$VLLM_API_KEY"}' in command


def _volume_exists(name: str) -> bool:
    return subprocess.run(["docker", "volume", "inspect", name], capture_output=True,
                          check=False).returncode == 0


def test_the_clean_up_removes_its_own_volumes_only(workdir: Path) -> None:
    """`down -v` here removed the user's compile cache: one volume per vendor was shared by
    every project, and Compose removes the volumes a file declares, whoever created them."""
    env = {"GLMKIT_HOME": str(workdir / "kit"), "HF_HOME": str(workdir / "hf")}
    users, _ = resolve_settings({"project": "glmkit-policy-user"}, {}, env)
    (theirs,) = [m.source for m in plan_here(users, NO_GPU, env).mounts if m.kind == "volume"]
    ours_settings, _ = resolve_settings({"project": "glmkit-policy"}, {}, env)
    ours = plan_here(ours_settings, NO_GPU, env)
    (own,) = [m.source for m in ours.mounts if m.kind == "volume"]
    existed = _volume_exists(theirs)
    if not existed:  # as a user's `invoke up` leaves it
        subprocess.run(["docker", "volume", "create", "--label",
                        "com.docker.compose.project=glmkit-policy-user", theirs],
                       capture_output=True, check=True)
    try:
        _created_command(write_compose(ours, workdir), ours.project)
        assert _volume_exists(theirs)
        assert not _volume_exists(own)  # its own is cleaned up
    finally:
        if not existed:
            subprocess.run(["docker", "volume", "rm", theirs], capture_output=True,
                           check=False)


def test_option_table_matches_the_images_parser() -> None:
    if not _image_present():
        pytest.skip(f"{CPU_IMAGE.ref} not built")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "vllm_flags.py"),
                           CPU_IMAGE.ref, "--check"], capture_output=True, text=True,
                          check=False, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
