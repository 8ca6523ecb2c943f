"""Vision (#19): the tiny GLM-4.5V, the CPU image's vision extras, the vision flags."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from glmkit.knowledge.catalog import TINY_MODEL_ID, TINY_VISION_ID, resolve_model
from glmkit.plan.model_facts import ModelFacts, decide_facts
from glmkit.plan.serve import CONTAINER_MEDIA
from glmkit.run import image_build, tiny_model
from tests.unit.helpers import plan_for

ROOT = Path(__file__).parents[2]


def test_the_tiny_vision_model_is_a_catalog_vision_model_made_locally() -> None:
    spec = resolve_model(TINY_VISION_ID)
    assert spec.vision and spec.local_dir == "models/glm-tiny-vision"
    assert spec.tool_parser == "glm45" and spec.reasoning_parser == "glm45"
    # Which tiny model it is, the plan decides once; `up` makes that one.
    assert decide_facts(spec, ()).tiny == "vision"
    assert tiny_model.kind_of("vision") is tiny_model.VISION
    assert decide_facts(resolve_model(TINY_MODEL_ID), ()).tiny == "text"
    assert tiny_model.kind_of("text") is tiny_model.TEXT
    assert decide_facts(resolve_model("zai-org/GLM-4.5V"), ()).tiny is None


def test_tiny_model_hashes_cover_both_scripts_and_the_kind(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in (tiny_model.GENERATOR, tiny_model.TRAINER):
        (scripts / name).write_text(name)
    text, vision = (tiny_model.recipe_hash(scripts, 2, k)
                    for k in (tiny_model.TEXT, tiny_model.VISION))
    assert text != vision  # the same scripts make both: the kind tells them apart
    # Both models come from both scripts (#28): a change to either makes both again.
    (scripts / tiny_model.GENERATOR).write_text("changed")
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.VISION) != vision
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.TEXT) != text
    text, vision = (tiny_model.recipe_hash(scripts, 2, k)
                    for k in (tiny_model.TEXT, tiny_model.VISION))
    (scripts / tiny_model.TRAINER).write_text("changed")
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.VISION) != vision
    assert tiny_model.recipe_hash(scripts, 2, tiny_model.TEXT) != text
    assert tiny_model.recipe_hash(scripts, 4, tiny_model.VISION) != \
        tiny_model.recipe_hash(scripts, 2, tiny_model.VISION)
    assert sorted(p.name for p in (ROOT / "scripts").glob("*tiny*.py")) == \
        sorted((tiny_model.GENERATOR, tiny_model.TRAINER))  # no third script to miss


@pytest.mark.parametrize("kind", [tiny_model.TEXT, tiny_model.VISION])
def test_tiny_models_come_from_the_same_two_scripts_in_the_cpu_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: tiny_model.TinyKind) -> None:
    """--vision reaches the generator as an argument of its own, after the layers; the
    trainer reads the kind from the model it is given."""
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_: object) -> None:
        calls.append(argv)
        (out,) = (a.removesuffix(":/out") for a in argv if a.endswith(":/out"))
        (Path(out) / tiny_model.INFO).write_text("{}")  # what the scripts leave there

    monkeypatch.setattr(tiny_model, "run", fake_run)
    assert tiny_model.generate("img", tmp_path / "m", ROOT / "scripts", layers=4, kind=kind)
    (argv,) = calls
    script = argv[argv.index("-c") + 1]
    assert script.count("/glmkit-scripts/") == 2 and tiny_model.GENERATOR in script \
        and tiny_model.TRAINER in script
    assert argv[argv.index("-c") + 2:] == ["sh", "4", *kind.generator_args]
    assert ("--vision" in argv) == (kind is tiny_model.VISION)
    recipe = tiny_model.recipe_hash(ROOT / "scripts", 4, kind)
    assert tiny_model.is_current(tmp_path / "m", recipe)


def test_tiny_vision_serves_with_the_vision_flags_the_cpu_build_accepts(tmp_path: Path) -> None:
    plan = plan_for(vendor="cpu", model=TINY_VISION_ID, media_dir=str(tmp_path))
    args = plan.serve_args
    for flag, value in (("--mm-encoder-tp-mode", "data"), ("--mm-processor-cache-type", "shm"),
                        ("--allowed-local-media-path", CONTAINER_MEDIA)):
        assert args[args.index(flag) + 1] == value
    assert "--enable-expert-parallel" in args and "/" not in args
    media = [m for m in plan.mounts if m.target == CONTAINER_MEDIA]
    assert media and media[0].read_only and media[0].source == str(tmp_path)
    assert "--allowed-local-media-path" not in plan_for(vendor="cpu",
                                                        model=TINY_VISION_ID).serve_args


def test_extras_are_exact_pins_hashed_into_the_build(tmp_path: Path) -> None:
    pins = image_build.extras_pins(ROOT / "docker/cpu" / image_build.EXTRAS)
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", p) for p in pins)
    assert any(p.startswith("torchvision==") for p in pins)
    assert any(p.startswith("datasets==") for p in pins)
    ignore = (ROOT / "docker/cpu/.dockerignore").read_text().split()
    assert "!extras.txt" in ignore and "!wheelhouse-extras/*.whl" in ignore
    # The build hash moves with the pins, so a changed pin rebuilds the image.
    from glmkit.knowledge.images import CPU_IMAGE

    build = tmp_path / "docker/cpu"
    build.mkdir(parents=True)
    (build / "Dockerfile").write_text((ROOT / "docker/cpu/Dockerfile").read_text())
    (build / image_build.EXTRAS).write_text("datasets==1.0\n")
    first = image_build.build_hash(CPU_IMAGE, tmp_path)
    (build / image_build.EXTRAS).write_text("datasets==1.1\n")
    assert image_build.build_hash(CPU_IMAGE, tmp_path) != first


@pytest.mark.parametrize("line", ["# comment", "", "   "])
def test_extras_pins_skip_comments_and_blanks(tmp_path: Path, line: str) -> None:
    path = tmp_path / "extras.txt"
    path.write_text(f"{line}\ndatasets==5.2.0\n")
    assert image_build.extras_pins(path) == ["datasets==5.2.0"]


# --- the VisionArena workload, offline -------------------------------------------------

def _server() -> object:
    from glmkit.run.server import RunningServer

    return RunningServer(container="c", served_model=TINY_VISION_ID, model_ref="/models/v",
                         max_model_len=2048, vendor="cpu", image="img",
                         serve_args=("--mm-encoder-tp-mode", "data"),
                         base_url="http://127.0.0.1:8100", facts=ModelFacts(vision=True))


def test_visionarena_reads_a_local_folder_as_visionarena_offline() -> None:
    from dataclasses import replace

    from glmkit.measure.point import bench_argv, offline_env
    from glmkit.measure.workloads import WORKLOADS, Point

    wl = replace(WORKLOADS["visionarena"], dataset_path="/tmp/glmkit-datasets/sample-1",
                 dataset_revision="sample-1")
    argv = bench_argv(_server(), wl, Point(batch=4, num_prompts=4, max_concurrency=None,  # type: ignore[arg-type]
                                           request_rate="inf"), "r.json")
    value = dict(word.split("=", 1) for word in argv if word.startswith("--") and "=" in word)
    assert value["--dataset-name"] == "hf" and value["--hf-name"] == "lmarena-ai/VisionArena-Chat"
    assert value["--dataset-path"] == "/tmp/glmkit-datasets/sample-1"
    assert value["--backend"] == "openai-chat" and value["--hf-output-len"] == "128"
    assert "--ignore-eos" not in argv
    assert "HF_DATASETS_OFFLINE=1" in offline_env(wl) and "HF_HUB_OFFLINE=1" in offline_env(wl)
    assert offline_env(WORKLOADS["vision"]) == []


def test_random_mm_workload_sends_synthetic_images() -> None:
    from glmkit.measure.point import bench_argv
    from glmkit.measure.workloads import WORKLOADS, Point

    argv = bench_argv(_server(), WORKLOADS["random-mm"], Point(  # type: ignore[arg-type]
        batch=2, num_prompts=2, max_concurrency=None, request_rate="inf"), "r.json")
    assert "--dataset-name=random-mm" in argv
    assert "--endpoint=/v1/chat/completions" in argv


def _parquet_folder(root: Path, revision: str | None = None) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    if revision:
        (root / "glmkit-dataset.json").write_text(f'{{"revision": "{revision}"}}')
    return root


def test_visionarena_is_found_in_a_folder_or_the_hf_cache(tmp_path: Path) -> None:
    from glmkit.measure.bench_data import locate_visionarena

    local = locate_visionarena(str(_parquet_folder(tmp_path / "va", "sample-abc")), tmp_path)
    assert (local.origin, local.revision) == ("local", "sample-abc")
    unnamed = locate_visionarena(str(_parquet_folder(tmp_path / "other")), tmp_path)
    assert unnamed.revision.startswith("local-")
    snap = _parquet_folder(tmp_path / "hf/hub/datasets--lmarena-ai--VisionArena-Chat/"
                                      "snapshots/0123abc")
    marker = tmp_path / "hf/glmkit-complete/datasets--lmarena-ai--VisionArena-Chat.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(f'{{"path": "{snap}"}}')
    cached = locate_visionarena(None, tmp_path / "hf")
    assert (cached.origin, cached.revision, cached.folder) == ("hf-cache", "0123abc", snap)


@pytest.mark.parametrize(("path", "message"), [
    (None, "VisionArena is not on this machine"),
    ("/etc", "system folder"),
    ("/", "system folder"),
    ("/nonexistent/glmkit-va", "not a folder"),
    ("~/.ssh", "keys"),
    ("x\ny", "line break"),
])
def test_visionarena_missing_or_hostile_folders_are_one_line_errors(
        tmp_path: Path, path: str | None, message: str) -> None:
    from glmkit.errors import UsageError
    from glmkit.measure.bench_data import locate_visionarena

    with pytest.raises(UsageError, match=message) as err:
        locate_visionarena(path, tmp_path)
    assert "\n" not in str(err.value).replace("x\ny", "")


def test_a_folder_without_parquet_is_not_visionarena(tmp_path: Path) -> None:
    from glmkit.errors import UsageError
    from glmkit.measure.bench_data import locate_visionarena

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no data/\\*.parquet"):
        locate_visionarena(str(tmp_path / "empty"), tmp_path)


@pytest.mark.parametrize("revision", [
    "x" * 500, "bad\\u001b[31m", "../../usr/lib/python3/dist-packages/glmkit_evil", "..",
    "a/b", "-rf", ".hidden", "a..b", ""])
def test_a_folders_own_revision_is_used_only_as_one_plain_path_part(
        tmp_path: Path, revision: str) -> None:
    """glmkit-dataset.json comes with the folder: its revision names the copy's folder in
    the container, so `..` there would have `docker cp` write anywhere in it."""
    from glmkit.measure.bench_data import locate_visionarena

    folder = _parquet_folder(tmp_path / "va", revision)
    assert locate_visionarena(str(folder), tmp_path).revision.startswith("local-")
    (folder / "glmkit-dataset.json").write_text('{"revision": "sample-3fe3f1d254e4"}')
    assert locate_visionarena(str(folder), tmp_path).revision == "sample-3fe3f1d254e4"


def test_a_data_set_is_copied_only_under_the_kits_folder_in_the_container(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from glmkit.errors import UsageError
    from glmkit.measure import bench_data

    calls: list[list[str]] = []
    monkeypatch.setattr(bench_data, "run", lambda argv, check=True: calls.append(argv) or
                        SimpleNamespace(returncode=1))
    ctr = SimpleNamespace(name="srv", attrs={"Mounts": []})
    good = bench_data.DatasetSource(tmp_path, "sample-1", "local")
    assert bench_data.stage(good, ctr) == f"{bench_data.CONTAINER_DATA}/sample-1"
    assert calls[-1][-1] == f"srv:{bench_data.CONTAINER_DATA}/sample-1"
    calls.clear()
    with pytest.raises(UsageError, match="one path part"):
        bench_data.stage(bench_data.DatasetSource(tmp_path, "../../usr/lib/x", "local"), ctr)
    assert calls == []


def test_bench_data_stages_in_a_fresh_folder_and_leaves_others_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing `<out>.partial` was removed, and a link under that name followed."""
    import json as json_
    from types import SimpleNamespace

    from glmkit.measure import bench_data

    def fake_docker_run(argv: list[str], check: bool = True) -> SimpleNamespace:
        staging = Path(argv[argv.index("-v", argv.index("-v") + 1) + 1].split(":")[0])
        (staging / bench_data.INFO).write_text(json_.dumps({"revision": "sample-1", "rows": 4}))
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(bench_data, "run", fake_docker_run)
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "keep.txt").write_text("mine")
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "two.partial").symlink_to(victim)
    info = bench_data.make_sample("img", str(tmp_path / "out"), ROOT / "scripts", 4)
    assert info["revision"] == "sample-1" and (tmp_path / "out" / bench_data.INFO).is_file()
    assert (tmp_path / "out.partial" / "keep.txt").read_text() == "mine"
    bench_data.make_sample("img", str(tmp_path / "two"), ROOT / "scripts", 4)
    assert list(victim.iterdir()) == [] and (tmp_path / "two.partial").is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_only_the_benchmark_data_set_is_downloaded(tmp_path: Path) -> None:
    from glmkit.errors import UsageError
    from glmkit.measure.bench_data import download_dataset

    for repo in ("evil/dataset", "../../etc", "lmarena-ai/VisionArena-Chat\n"):
        with pytest.raises(UsageError, match="glmkit benchmarks with"):
            download_dataset(repo, None, tmp_path, {})


def test_the_dataset_stays_where_a_mount_reaches_it(tmp_path: Path) -> None:
    from glmkit.measure.bench_data import DatasetSource, container_folder

    folder = tmp_path / "hub/datasets--x/snapshots/abc"

    from types import SimpleNamespace

    mounted = SimpleNamespace(attrs={"Mounts": [{"Source": str(tmp_path),
                                                 "Destination": "/root/.cache/huggingface"}]})
    source = DatasetSource(folder, "abc", "hf-cache")
    assert container_folder(source, mounted) == \
        "/root/.cache/huggingface/hub/datasets--x/snapshots/abc"
    assert container_folder(source, SimpleNamespace(attrs={"Mounts": []})) is None


def test_sample_rows_are_bounded(tmp_path: Path) -> None:
    from glmkit.errors import UsageError
    from glmkit.measure.bench_data import make_sample

    for rows in (0, -1, 10_001):
        with pytest.raises(UsageError, match="--rows"):
            make_sample("img", str(tmp_path / "out"), ROOT / "scripts", rows)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty folder"):
        make_sample("img", str(tmp_path / "full"), ROOT / "scripts", 4)


# --- sizing ------------------------------------------------------------------------------

def test_shm_holds_the_shm_processor_cache() -> None:
    from glmkit.errors import UsageError
    from glmkit.knowledge.sizing import processor_cache_shm_gb, shm_size

    shm = ["--mm-processor-cache-type", "shm"]
    assert processor_cache_shm_gb(shm) == 4.0
    assert processor_cache_shm_gb([*shm, "--mm-processor-cache-gb", "1.5"]) == 1.5
    assert processor_cache_shm_gb(["--mm-processor-cache-type=lru"]) == 0.0
    for bad in ("nan", "-3", "x"):
        assert processor_cache_shm_gb([*shm, "--mm-processor-cache-gb", bad]) in (0.0, 4.0)
    for absurd in ("inf", "1e20", "2000"):  # refused, never an absurd shm_size
        with pytest.raises(UsageError, match="--mm-processor-cache-gb"):
            processor_cache_shm_gb([*shm, "--mm-processor-cache-gb", absurd])
    assert shm_size("2gb", shm) == "6gb"
    assert shm_size("2gb", []) == "2gb" and shm_size(None, []) is None


def test_up_sizes_the_containers_shm_for_the_processor_cache() -> None:
    vision = plan_for(vendor="cpu", model=TINY_VISION_ID)
    text = plan_for(vendor="cpu")
    assert text.shm_size == "2gb" and vision.shm_size == "6gb"


def test_vision_tower_size_from_the_config() -> None:
    from glmkit.knowledge.sizing import encoder_cache_gb, vision_tower_params_b

    glm45v = {"vision_config": {"depth": 24, "hidden_size": 1536, "intermediate_size": 13696,
                                "out_hidden_size": 4096, "patch_size": 14,
                                "temporal_patch_size": 2, "spatial_merge_size": 2}}
    assert 1.5 < vision_tower_params_b(glm45v) < 2.5  # GLM-4.5V's tower: about 2B
    assert vision_tower_params_b({}) == 0.0
    assert encoder_cache_gb(16384, 4096) == pytest.approx(0.134, abs=1e-3)


# --- vision cases of `invoke check` ----------------------------------------------------

class _HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"Error code: {status} - refused")
        self.status_code = status


class _FakeChat:
    """A chat endpoint that counts 6 tokens per image/video part (or none: `blind`) and
    refuses file:// URLs outside /media."""

    def __init__(self, blind: bool = False) -> None:
        self.blind = blind
        self.chat = self.completions = self

    def create(self, *, messages: list[dict[str, object]], **_: object) -> object:
        from types import SimpleNamespace

        content = messages[0]["content"]
        parts = [] if isinstance(content, str) else [p for p in content  # type: ignore[union-attr]
                                                      if p["type"] != "text"]
        for part in parts:
            url = str(part[part["type"]]["url"])  # type: ignore[index]
            if url.startswith("file://") and (not url.startswith("file:///media/")
                                              or ".." in url):
                raise _HTTPError(400)
            if url.startswith("data:image/png;base64,bm90"):
                raise _HTTPError(400)
        tokens = 19 + (0 if self.blind else 6 * len(parts))
        return SimpleNamespace(usage=SimpleNamespace(prompt_tokens=tokens),
                               choices=[SimpleNamespace(finish_reason="length")])


def _target(tmp_path: Path) -> object:
    from glmkit.run.vision_check import VisionTarget

    return VisionTarget("http://127.0.0.1:1", None, TINY_VISION_ID, tmp_path, None)


def test_vision_cases_pass_when_images_reach_the_model(tmp_path: Path) -> None:
    from glmkit.run.vision_check import Rows, chat_cases

    rows = Rows([])
    chat_cases(rows, _target(tmp_path), _FakeChat())  # type: ignore[arg-type]
    failed = {r.case: r.detail for r in rows.rows if not r.ok}
    # The fake counts 6 tokens whatever the size: only "bigger image" and the gateway fail.
    assert set(failed) == {"vision: bigger image, more tokens", "vision: image by http URL"}
    assert not list(tmp_path.iterdir())  # the media folder's test image is removed again
    refused = [r for r in rows.rows if "refused" in r.case]
    assert len(refused) == 3 and all(r.ok and "400" in r.detail for r in refused)


def test_vision_cases_fail_when_the_server_drops_the_images(tmp_path: Path) -> None:
    from glmkit.run.vision_check import Rows, chat_cases

    rows = Rows([])
    chat_cases(rows, _target(tmp_path), _FakeChat(blind=True))  # type: ignore[arg-type]
    image = next(r for r in rows.rows if r.case == "vision: image (base64 data URL)")
    assert not image.ok and "did not reach the model" in image.detail


def test_a_served_hostile_input_or_a_5xx_fails() -> None:
    from glmkit.run.vision_check import Outcome, expect_refused

    assert expect_refused(lambda: Outcome(30, "stop"))[0] is not None

    def boom() -> Outcome:
        raise _HTTPError(500)

    assert "expected a 4xx" in str(expect_refused(boom)[0])


def test_vision_target_reads_the_media_mount_only_when_served() -> None:
    from types import SimpleNamespace

    from glmkit.run.vision_check import vision_target

    container = SimpleNamespace(attrs={
        "Mounts": [{"Source": "/srv/pictures", "Destination": "/media"}],
        "NetworkSettings": {"Networks": {"vis_default": {"Gateway": "172.30.0.1"}}}})
    served = vision_target(container, "u", None, "m", ("--allowed-local-media-path", "/media"))
    assert served.media_dir == Path("/srv/pictures") and served.gateway == "172.30.0.1"
    assert vision_target(container, "u", None, "m", ()).media_dir is None


def test_vision_servers_by_recipe_or_flags() -> None:
    def vision(model: str, *args: str) -> bool:
        return decide_facts(resolve_model(model), args).vision

    assert vision(TINY_VISION_ID)
    assert vision("zai-org/GLM-4.6V")
    assert not vision(TINY_MODEL_ID)
    assert vision("someone/model", "--mm-processor-cache-type", "shm")
    assert vision("someone/model", "--allowed-local-media-path=/media")


def test_a_video_is_inline_jpeg_frames() -> None:
    from glmkit.run.vision_check import video_url

    url = video_url(frames=3)
    assert url.startswith("data:video/jpeg;base64,") and url.count(",") == 3


def test_the_check_image_never_follows_a_link_in_the_media_folder(tmp_path: Path) -> None:
    """The media folder is the user's: a link there under a name the check would use must
    not be written through (overwritten and opened up to 0644)."""
    import threading

    from glmkit.run.vision_check import MEDIA, media_file

    media = tmp_path / "media"
    media.mkdir()
    secret = tmp_path / "id_rsa"
    secret.write_text("key")
    secret.chmod(0o600)
    (media / f".glmkit-check-{threading.get_ident()}.png").symlink_to(secret)
    with media_file(media, b"PNG") as url:
        assert url is not None and url.startswith(f"file://{MEDIA}/.glmkit-check-")
        made = media / url.rsplit("/", 1)[1]
        assert made.read_bytes() == b"PNG" and not made.is_symlink()
        assert made.stat().st_mode & 0o777 == 0o644
    assert secret.read_text() == "key" and secret.stat().st_mode & 0o777 == 0o600
    assert not made.exists()


@pytest.mark.parametrize("width", [1e300, 10**400, -1e300])
def test_an_absurd_vision_config_in_the_cache_is_not_read(tmp_path: Path, width: float) -> None:
    """A config.json in the HF cache is data from the Hub: sizes no float holds are
    ignored (built-in facts serve), not an OverflowError out of `render` and `plan`."""
    import json

    from glmkit.knowledge.catalog import resolve_model
    from glmkit.knowledge.sizing import ARCH, arch_key, known_arch

    spec = resolve_model("zai-org/GLM-4.6V")
    snap = tmp_path / "hub" / "models--zai-org--GLM-4.6V" / "snapshots" / "x"
    snap.mkdir(parents=True)
    config = {"architectures": ["Glm4vMoeForConditionalGeneration"],
              "text_config": {"hidden_size": 4096, "num_hidden_layers": 46,
                              "num_attention_heads": 96, "num_key_value_heads": 8,
                              "head_dim": 128, "n_routed_experts": 128,
                              "num_experts_per_tok": 8, "moe_intermediate_size": 1408,
                              "intermediate_size": 10944, "vocab_size": 151552,
                              "max_position_embeddings": 131072},
              "vision_config": {"hidden_size": width, "depth": 24, "intermediate_size": width,
                                "out_hidden_size": 4096}}
    (snap / "config.json").write_text(json.dumps(config))
    got, built_in = known_arch(spec, tmp_path), ARCH[arch_key(spec)]
    # the built-in facts serve, and say why the cache's file did not (#27, M2)
    assert got is not None and dataclasses.replace(got, source=built_in.source) == built_in
    assert "config.json not used: vision_config.hidden_size" in got.source
