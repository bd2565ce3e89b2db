"""``ingest --append`` (``tastemaker.data.append``): a full dump ingested with kept runs plus
incremental dumps appended one at a time equals ingesting them all together, byte for byte;
what cannot be appended is one clear error and leaves the output as it was."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from tastemaker.data import spill
from tastemaker.data.append import append
from tastemaker.data.filters import Filters
from tastemaker.data.ingest import ingest
from tastemaker.data.runs import natural_key
from tastemaker.data.synth import synthesize
from tastemaker.errors import ArtifactError, UsageError


def split_dump(dump: Path, out: Path, cuts: tuple[float, ...] = (0.7, 0.85)) -> list[Path]:
    """``dump``'s full dump split by time into a full dump and ``len(cuts)`` incrementals
    (ListenBrainz's layout); each incremental repeats the last rows of the one before and
    some of its own rows (duplicates to drop), the last one also holds ``dump``'s own
    incremental (which repeats the last hours of the full dump)."""
    files = sorted((dump / "full-dump-1").glob("*.parquet"), key=lambda p: natural_key(p.name))
    full = pa.concat_tables([pq.read_table(f) for f in files])
    times = pc.cast(full["listened_at"], pa.int64()).to_numpy()
    bounds = [-np.inf, *np.quantile(times, cuts), np.inf]
    pieces = []
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        piece = full.filter(pa.array((times >= low) & (times < high)))
        if pieces:
            piece = pa.concat_tables([pieces[-1].slice(pieces[-1].num_rows - 40), piece])
            piece = pa.concat_tables([piece, piece.slice(0, 25)])
        pieces.append(piece)
    own = pq.read_table(dump / "incremental-dump-2" / "0.parquet")
    pieces[-1] = pa.concat_tables([pieces[-1], own])
    folders = []
    for number, piece in enumerate(pieces, 1):
        folder = out / (f"incremental-dump-{number}" if number > 1 else "full-dump-1")
        folder.mkdir(parents=True)
        pq.write_table(piece, folder / "0.parquet", row_group_size=3_000)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("append")
    dump = synthesize(base / "synth", users=150, artists=400, listens=24_000, overlap_hours=240)
    return split_dump(dump, base / "split")


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def comparable(out: Path) -> dict:
    """The manifest without the kept runs and the source paths."""
    content = manifest(out)
    content["files"] = {k: v for k, v in content["files"].items() if not k.startswith("runs/")}
    del content["source"]["paths"]
    return content


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (and its parent's entries) by content."""
    files = {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return files | {"..": ",".join(sorted(p.name for p in folder.parent.iterdir()))}


FILTERS = Filters(
    min_user_items=3,
    min_item_users=2,
    start=datetime(2024, 3, 1, tzinfo=UTC),
    max_listens_per_day=40,
)


@pytest.mark.parametrize(("level", "filters"), [("artist", None), ("recording", FILTERS)])
def test_appending_one_dump_at_a_time_equals_ingesting_them_together(
    dumps, tmp_path, monkeypatch, level, filters
):
    monkeypatch.setattr(spill, "BATCH_ROWS", 2_000)  # several batches per dump
    full, *incrementals = dumps
    together = tmp_path / "together"
    ingest([full.parent], together, level=level, filters=filters)
    out = tmp_path / "appended"
    ingest([full], out, level=level, filters=filters, keep_runs=True, memory_limit=10**9)
    assert (out / "runs" / "state.json").is_file() and "runs/state.json" in manifest(out)["files"]
    for dump in incrementals:
        assert append([dump], out) is not None
    assert comparable(out) == comparable(together)
    source = manifest(out)["source"]
    assert source["paths"] == [str(p) for p in dumps]
    # Repeats across the dumps and within them were dropped, as the readers drop them.
    assert source["duplicates_dropped"] >= 2 * 25 + 40 and source["listens"] > 0
    # Both at once, too, and again from another budget (other batches).
    both = tmp_path / "both"
    ingest([full], both, level=level, filters=filters, keep_runs=True, memory_limit=10**8)
    append(incrementals, both)
    assert comparable(both) == comparable(together)


def test_the_kept_runs_are_an_ingest_of_their_own_too(dumps, tmp_path):
    """With kept runs the data files are those of the plain ingest; the runs are extra."""
    plain, kept = tmp_path / "plain", tmp_path / "kept"
    ingest([dumps[0]], plain)
    ingest([dumps[0]], kept, keep_runs=True)
    assert comparable(plain) == comparable(kept)
    runs = [k for k in manifest(kept)["files"] if k.startswith("runs/")]
    assert {"runs/items.parquet", "runs/tracks.parquet"} <= set(runs) and len(runs) > 4
    assert not any(k.endswith(".npy") for k in runs)


def test_what_cannot_be_appended_is_one_clear_error(dumps, tmp_path, capsys):
    full, second, third = dumps
    plain, out = tmp_path / "plain" / "data", tmp_path / "kept" / "data"
    assert run_cli(capsys, "ingest", full, "--out", plain)[0] == 0
    assert run_cli(capsys, "ingest", full, "--out", out, "--keep-runs")[0] == 0
    assert run_cli(capsys, "ingest", third, "--out", out, "--append")[0] == 0
    cases = {
        "without --keep-runs": (plain, second),
        "is older than incremental-dump-3": (out, second),
        "holds 3 dumps": (out, full.parent),
    }
    for message, (target, dump) in cases.items():
        before = snapshot(target)
        code, _, err = run_cli(capsys, "ingest", dump, "--out", target, "--append")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(target) == before
    # The same incremental twice: a no-op that says so.
    before = snapshot(out)
    code, printed, _ = run_cli(capsys, "ingest", third, "--out", out, "--append")
    assert code == 0 and "nothing to do" in printed and snapshot(out) == before
    # Options the directory's ingest decided.
    code, _, err = run_cli(capsys, "ingest", third, "--out", out, "--append", "--no-events")
    assert code == 2 and "--append keeps the level" in err


def test_a_changed_run_file_is_refused_and_nothing_is_written(dumps, tmp_path, capsys):
    full, second, _ = dumps
    out = tmp_path / "data"
    ingest([full], out, keep_runs=True)
    run = sorted((out / "runs" / "p0").glob("*.parquet"))[0]
    data = bytearray(run.read_bytes())
    data[len(data) // 2] ^= 0xFF
    run.write_bytes(bytes(data))
    before = snapshot(out)
    code, _, err = run_cli(capsys, "ingest", second, "--out", out, "--append")
    assert code == 2 and "checksum mismatch" in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        append([second], out)


def test_keep_runs_is_for_listenbrainz_parquet_dumps(listenbrainz_path, tmp_path):
    with pytest.raises(UsageError, match="--keep-runs keeps ListenBrainz Parquet"):
        ingest([listenbrainz_path / "listenbrainz_listens.jsonl"], tmp_path / "a", keep_runs=True)
    with pytest.raises(UsageError, match="leave out --listens"):
        ingest([listenbrainz_path], tmp_path / "b", keep_runs=True, listens=True)
    assert list(tmp_path.iterdir()) == []
