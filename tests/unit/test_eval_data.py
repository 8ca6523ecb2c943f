"""GSM8K from the Hub into the HF cache and read back offline, and the tiny model's set
(#34): the real huggingface_hub client against the in-process fake Hub; missing,
truncated and hostile files refused in one line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glmkit.errors import UsageError
from glmkit.measure.eval_data import (
    MISSING,
    download_gsm8k,
    load_gsm8k,
    load_set,
    load_tiny,
    read_split,
)

from ..fakehub import Hub, gsm8k_sample, serve


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_XET"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """An HF cache with the sample downloaded through the Hub client."""
    hub = Hub(repos={}, datasets={"openai/gsm8k": gsm8k_sample(tmp_path / "repo")})
    with serve(hub) as endpoint:
        line = download_gsm8k(None, tmp_path / "hf", {}, endpoint=endpoint)
    assert "8 train and 12 test questions" in line
    yield tmp_path / "hf"


def test_downloaded_gsm8k_is_read_offline(cache: Path) -> None:
    found = load_gsm8k(cache)
    assert (len(found.train), len(found.test), found.name) == (8, 12, "gsm8k")
    assert found.test[2].target == "7" and found.train[0].question.startswith("train 0:")
    assert load_set("gsm8k", cache).test == found.test


def test_no_download_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        load_gsm8k(tmp_path)
    assert str(err.value) == MISSING


def _test_file(cache: Path) -> Path:
    return next(cache.glob("hub/datasets--openai--gsm8k/snapshots/*/main/test-*.parquet"))


def test_a_truncated_file_is_one_line(cache: Path) -> None:
    path = _test_file(cache).resolve()  # the blob behind the snapshot's link
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="not a readable parquet file") as err:
        load_gsm8k(cache)
    assert "\n" not in str(err.value)


def test_a_link_out_of_the_cache_is_not_followed(cache: Path, tmp_path: Path) -> None:
    link = _test_file(cache)
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(link.resolve().read_bytes())
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(UsageError, match="symbolic link out of"):
        load_gsm8k(cache)


def test_a_planted_record_cannot_point_elsewhere(cache: Path, tmp_path: Path) -> None:
    marker = cache / "glmkit-complete" / "datasets--openai--gsm8k.json"
    marker.write_text(json.dumps({"path": str(gsm8k_sample(tmp_path / "elsewhere"))}))
    with pytest.raises(UsageError, match="not a snapshot in"):
        load_gsm8k(cache)


def _parquet(path: Path, columns: dict[str, Any]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(("columns", "reason"), [
    ({"question": ["q"]}, "not a readable parquet"),
    ({"question": ["q"], "answer": [7]}, "refused"),
    ({"question": ["q"], "answer": ["no hash mark"]}, "must end with '#### N'"),
    ({"question": ["x" * 20_000], "answer": ["#### 1"]}, "refused"),
    ({"question": [], "answer": []}, "refused"),
], ids=["no answer column", "number answers", "no ####", "huge question", "no rows"])
def test_hostile_parquet_is_refused_in_one_line(tmp_path: Path, columns: dict[str, Any],
                                                reason: str) -> None:
    import pyarrow as pa

    typed = {k: pa.array(v, type=pa.string() if not v or isinstance(v[0], str) else None)
             for k, v in columns.items()}
    path = _parquet(tmp_path / "x.parquet", typed)
    with pytest.raises(UsageError, match=reason) as err:
        read_split(path, tmp_path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_a_file_past_the_size_limit_or_not_a_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.parquet"
    with big.open("wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # sparse: no disk used
    with pytest.raises(UsageError, match="over the"):
        read_split(big, tmp_path)
    fifo = tmp_path / "fifo.parquet"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        read_split(fifo, tmp_path)


def tiny_set(path: Path, count: int = 6, **change: Any) -> Path:
    """A set in tiny_gsm8k.json's schema (the tiny-model helper ships the real one)."""
    def item(i: int) -> dict[str, str]:
        return {"question": f"Ann has {i} apples and gets 2 more. How many?",
                "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}

    data = {"name": "tiny-arith", "source": "made for tests",
            "train": [item(i) for i in range(5)], "test": [item(i) for i in range(10, 10 + count)],
            **change}
    path.write_text(json.dumps(data))
    return path


def test_the_tiny_set_is_read(tmp_path: Path) -> None:
    found = load_tiny(tiny_set(tmp_path / "t.json"))
    assert (found.name, len(found.train), len(found.test)) == ("tiny-arith", 5, 6)
    assert found.revision.startswith("sha256-") and found.test[0].target == "12"


@pytest.mark.parametrize("change", [
    {"train": []}, {"test": [{"question": "q", "answer": "7"}]}, {"test": "x"},
    {"name": 3},
], ids=["no few-shot examples", "answer without ####", "test not a list", "name not text"])
def test_a_hostile_tiny_set_is_refused(tmp_path: Path, change: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="is refused") as err:
        load_tiny(tiny_set(tmp_path / "t.json", **change))
    assert "\n" not in str(err.value)


def test_an_absent_tiny_set_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot be read"):
        load_tiny(tmp_path / "none.json")


def test_an_unknown_dataset_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="choose gsm8k or tiny-arith"):
        load_set("mmlu" * 30, tmp_path)


def test_download_dataset_takes_gsm8k(monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    from glmkit.measure import bench_data, eval_data

    calls: list[Any] = []
    monkeypatch.setattr(eval_data, "download_gsm8k", lambda *a: calls.append(a) or "done")
    for name in ("gsm8k", "openai/gsm8k"):
        assert bench_data.download_dataset(name, None, tmp_path, {}) == "done"
    assert len(calls) == 2
    with pytest.raises(UsageError, match="evaluates with gsm8k"):
        bench_data.download_dataset("gsm8k-evil", None, tmp_path, {})
