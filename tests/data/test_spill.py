"""Ingest past a memory budget (``tastemaker.data.spill``): the same directory, byte for byte,
as the in-memory path, from every kind of reader, with filters, and nothing left behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from conftest import run_cli
from tastemaker.data import spill
from tastemaker.data.filters import Filters
from tastemaker.data.ingest import ingest
from tastemaker.data.interactions import Interactions
from tastemaker.data.readers import ReaderOptions
from tastemaker.data.synth import synthesize, synthetic_listens
from tastemaker.errors import UsageError


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    """A synthetic ListenBrainz dump (full + incremental, with repeats across them)."""
    return synthesize(
        tmp_path_factory.mktemp("synth") / "dump",
        users=150,
        artists=400,
        listens=24_000,
        overlap_hours=240,
    )


@pytest.fixture(scope="module")
def delimited(tmp_path_factory):
    """The same kind of listens as a CSV of names only, some rows standing for several plays."""
    frame = synthetic_listens(users=80, artists=200, listens=6_000, seed=3)
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("csv") / "plays.csv"
    frame.select(
        "user",
        pl.col("artist_name").alias("artist"),
        pl.col("recording_name").alias("recording"),
        pl.col("listened_at").dt.epoch("s").alias("timestamp"),
        pl.Series("count", rng.integers(1, 4, frame.height)),
    ).write_csv(path)
    return path


def manifest(out) -> dict:
    return json.loads((out / "manifest.json").read_text())


def both(sources, tmp_path, monkeypatch, **options) -> tuple[dict, dict, Interactions]:
    """Ingest in memory and spilled (a budget of a quarter of the estimate: several
    partitions; small batches: several combinations merged); both manifests."""
    monkeypatch.setattr(spill, "BATCH_ROWS", 2_000)
    memory = ingest(sources, tmp_path / "memory", **options)
    budget = spill.estimate_listens(sources) * spill.PEAK_BYTES_PER_LISTEN // 4
    spilled = ingest(sources, tmp_path / "spilled", memory_limit=budget, **options)
    assert spilled.events is None  # they went to disk, never into memory at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory", "spilled"]
    assert memory.fingerprint == spilled.fingerprint
    return manifest(tmp_path / "memory"), manifest(tmp_path / "spilled"), memory


FILTERS = Filters(
    min_user_items=3,
    min_item_users=2,
    start=datetime(2024, 3, 1, tzinfo=UTC),
    max_listens_per_day=40,
)


@pytest.mark.parametrize(
    ("level", "filters"),
    [("artist", None), ("recording", None), ("release", FILTERS), ("artist", FILTERS)],
)
def test_a_spilled_synthetic_dump_is_byte_identical(dump, tmp_path, monkeypatch, level, filters):
    memory, spilled, inter = both([dump], tmp_path, monkeypatch, level=level, filters=filters)
    assert memory == spilled  # every file's checksum, the counts, the filter report
    assert {"events.npz", "matrix.npz", "items.parquet", "tracks.parquet"} <= set(memory["files"])
    assert memory["source"]["duplicates_dropped"] > 0  # the readers' dedup ran before spilling
    if filters is not None:
        removed = {step["name"]: step for step in memory["source"]["filtered"]}
        assert all(removed[name]["listens"] > 0 for name in ("date range", "bots", "k-core"))
    assert len(Interactions.load(tmp_path / "spilled").events) == inter.user_items.sum()


def test_a_spilled_delimited_file_with_play_counts_is_byte_identical(
    delimited, tmp_path, monkeypatch
):
    options = ReaderOptions(header=True)
    memory, spilled, inter = both([delimited], tmp_path, monkeypatch, options=options)
    assert memory == spilled and "listens.parquet" in memory["files"]
    assert inter.source["listens"] > 6_000  # rows of several plays were summed


def test_spilled_listenbrainz_dumps_and_json_are_byte_identical(
    listenbrainz_path, tmp_path, monkeypatch
):
    for kind, sources in {
        "parquet": [listenbrainz_path],
        "json": [listenbrainz_path / "listenbrainz_listens.jsonl"],
    }.items():
        memory, spilled, _ = both(sources, tmp_path / kind, monkeypatch, level="recording")
        assert memory == spilled, kind


def test_the_budget_decides_and_a_failed_spill_leaves_nothing(dump, tmp_path):
    summary = json.loads((dump / "synth.json").read_text())
    listens = spill.estimate_listens(sorted(dump.rglob("*.parquet")))
    assert listens == summary["rows"]["full"] + summary["rows"]["incremental"]
    # The dump's metadata files (synth's tags) count at the text estimate: never fewer.
    assert spill.estimate_listens([dump]) >= listens
    assert spill.spill_partitions(listens, listens * spill.PEAK_BYTES_PER_LISTEN) == 0
    assert spill.spill_partitions(listens, listens * spill.PEAK_BYTES_PER_LISTEN // 4) == 8
    assert spill.spill_partitions(listens, 1) == spill.MAX_PARTITIONS
    assert spill.default_memory_limit() == int(spill.machine_memory() * spill.MEMORY_FRACTION)
    # The k-core runs after the merge; when it empties everything, the error leaves no runs.
    with pytest.raises(UsageError, match="removed every listen"):
        ingest([dump], tmp_path / "out", memory_limit=1, filters=Filters(min_user_items=10**6))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "size"), [("4GB", 4 * 10**9), ("512 MiB", 512 * 2**20), ("1.5g", 1_500_000_000)]
)
def test_sizes_parse(text, size):
    assert spill.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "4 parsecs", "-1GB", "0"])
def test_bad_sizes_are_one_clear_error(text):
    with pytest.raises(UsageError, match="--memory-limit"):
        spill.parse_size(text)


def test_cli_memory_limit(dump, tmp_path, capsys):
    args = ["ingest", dump, "--level", "recording", "--out"]
    assert run_cli(capsys, *args, tmp_path / "a")[0] == 0
    assert run_cli(capsys, *args, tmp_path / "b", "--memory-limit", "100KB")[0] == 0
    assert manifest(tmp_path / "a") == manifest(tmp_path / "b")
    code, _, err = run_cli(capsys, *args, tmp_path / "c", "--memory-limit", "lots")
    assert code == 2 and "--memory-limit must be a size" in err
