"""Spotify streaming history, as Spotify's privacy page delivers it: one folder or zip per person.

Files read, anywhere in the folder or zip (compressed ones too), each a JSON array of plays:

* the extended streaming history: ``Streaming_History_Audio_*.json`` (since 2023) and
  ``endsong_*.json`` (before): ``ts`` (ISO-8601 UTC, when the play ended), ``ms_played``,
  ``master_metadata_track_name``, ``master_metadata_album_artist_name``,
  ``master_metadata_album_album_name``, ``spotify_track_uri``; a podcast episode or an
  audiobook chapter has ``episode_name`` / ``spotify_episode_uri`` (``audiobook_*``) instead
  of the track fields; older files name the account in ``username``;
* the account data's ``StreamingHistory*.json`` (``StreamingHistory0.json``; since 2023
  ``StreamingHistory_music_0.json`` and ``StreamingHistory_podcast_0.json``): ``endTime``
  (``YYYY-MM-DD HH:MM``, UTC), ``artistName``, ``trackName``, ``msPlayed``; podcast files hold
  ``podcastName`` / ``episodeName``.

The account data covers the last year of the plays the extended history holds, so where an
export has the extended history its account-data files are left out; video history
(``Streaming_History_Video_*``) is left out too; ``stats["left_out"]`` names each.

Canonical mapping: ``user`` = ``options.user`` (``--user``), else the plays' ``username``, else
the ``username`` of a ``Userdata.json`` in the export, else the folder's or zip's name;
``listened_at`` = end time minus ``ms_played`` (when the play started, the moment a scrobbler
records); ``artist_name``, ``release_name`` (the album, where the format has it),
``recording_name``; one listen per play. The track URI is not an MBID, so items are keyed by
names (artist; artist + album; artist + title).

Left out by rule and counted (``stats["skipped_podcasts"]``, ``["skipped_short_plays"]``,
``["skipped_unnamed"]``): podcast episodes and audiobooks; plays shorter than
``options.min_play_seconds`` (``--min-play-seconds``, default 30 s: Spotify's own threshold
for counting a stream, and Last.fm's for a scrobble; the history lists every start, skips
included); plays naming neither track nor episode (content since removed). A play found in
two files (the same end time, length, artist and title: two exports in one folder) counts
once (``stats["duplicates_dropped"]``). Bad rows (a record that is not an object, a missing
or unreadable end time, a ``ms_played`` that is not a number, negative, or longer than a
week, a track without an artist, a time out of range) name the file and the record's
1-based position in the array as the row. Each file is read whole, at most
``MAX_DOCUMENT_BYTES``; Spotify's own are about 10 MB.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.readers import ReaderOptions, SourceData, lazy_frames, require_file
from tastemaker.data.readers.rows import BadRows, bounds_text, time_bounds_ms
from tastemaker.data.readers.streams import (
    files_under,
    is_archive,
    members,
    plain_name,
    read_document,
)
from tastemaker.data.readers.text import clean_frame
from tastemaker.data.schema import LISTENS_SCHEMA
from tastemaker.errors import DataError

NAME = "spotify"
EXTENDED = re.compile(r"^(streaming_history_audio_.*|endsong.*)\.json$")
ACCOUNT = re.compile(r"^streaminghistory.*\.json$")
PODCAST_FILE = re.compile(r"^streaminghistory_podcast.*\.json$")
VIDEO = re.compile(r"^streaming_history_video_.*\.json$")
USER_DATA = "userdata.json"
SKIP_COUNTS = ("skipped_podcasts", "skipped_short_plays", "skipped_unnamed", "duplicates_dropped")
MAX_DOCUMENT_BYTES = 64 << 20
# A play longer than a week is a broken record, not a listen.
MAX_PLAY_MS = 7 * 24 * 3600 * 1000
_FIELDS = {
    "_row": pl.Int64,
    "end_ms": pl.Int64,
    "ms": pl.Int64,
    "artist_name": pl.Utf8,
    "release_name": pl.Utf8,
    "recording_name": pl.Utf8,
}


def _is_history(name: str) -> bool:
    return bool(EXTENDED.match(name) or ACCOUNT.match(name))


def detect(path: Path) -> bool:
    if path.is_dir():
        return bool(files_under(path, _is_history))
    if not path.is_file():
        return False
    if _is_history(plain_name(path.name).lower()):
        return True
    if path.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(_is_history(Path(n).name.lower()) for n in archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
    return False


def read(path: Path, options: ReaderOptions) -> SourceData:
    if not path.is_dir():
        require_file(path)
    if options.min_play_seconds < 0 or not math.isfinite(options.min_play_seconds):
        raise DataError(f"--min-play-seconds must be a number >= 0; got {options.min_play_seconds}")
    names = _member_names(path)
    stats: dict[str, Any] = {"skipped_rows": 0, **dict.fromkeys(SKIP_COUNTS, 0)}
    wanted: set[str] | None = None  # None (a tar, listed only as it is read): every history
    if names is not None:
        history = {n for n in names if _is_history(n)}
        shown = names  # lower-case name -> the name as the export spells it
        if not history:
            raise DataError(
                "no Spotify streaming history (Streaming_History_Audio_*.json, endsong_*.json "
                "or StreamingHistory*.json)",
                path=path,
            )
        extended = any(EXTENDED.match(n) for n in history)
        wanted = {n for n in history if EXTENDED.match(n) or not extended}
        left = [
            f"{shown[n]} (account data: the extended history beside it holds the same plays)"
            for n in sorted(history - wanted)
        ] + [f"{shown[n]} (video history: not listens)" for n in sorted(filter(VIDEO.match, names))]
        if left:
            stats["left_out"] = [f"{path}: {entry}" for entry in left]
    return SourceData(
        listens=_lazy(path, wanted, options, stats),
        format=NAME,
        paths=[str(path)],
        stats=stats,
    )


def _member_names(path: Path) -> dict[str, str] | None:
    """The export's files: their lower-case names (without folders or compression suffixes,
    as the readers match them) to their names as given; None for a tar, which lists its
    members only as it is read."""
    if path.is_dir():
        files = [str(p.relative_to(path)) for p in files_under(path, lambda _: True)]
    elif path.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                files = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            raise DataError(
                "not a readable zip archive (truncated or damaged: its directory is missing)",
                path=path,
            ) from None
    elif is_archive(path):
        return None
    else:
        files = [path.name]
    return {plain_name(Path(f).name).lower(): f for f in files}


def _user(path: Path, options: ReaderOptions) -> str:
    """``--user``, else Userdata.json's username, else the folder's or zip's name."""
    if options.user:
        return options.user
    try:
        for _, stream in members(path, lambda name: name == USER_DATA):
            data = json.loads(read_document(stream, MAX_DOCUMENT_BYTES))
            if isinstance(data, dict) and isinstance(data.get("username"), str | int):
                return str(data["username"])
    except (DataError, ValueError):
        pass
    name = plain_name(path.name)
    for suffix in (".zip", ".tar", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _lazy(
    path: Path, wanted: set[str] | None, options: ReaderOptions, stats: dict[str, Any]
) -> pl.LazyFrame:
    """A polars IO source yielding one canonical frame per history file."""
    bad_rows = BadRows(options, stats)
    fallback = _user(path, options)

    def accept(name: str) -> bool:
        return _is_history(name) if wanted is None else name in wanted

    def frames() -> Iterator[pl.DataFrame]:
        counts = dict.fromkeys(SKIP_COUNTS, 0)
        seen: set[int] = set()
        for name, stream in members(path, accept):
            document = read_document(stream, MAX_DOCUMENT_BYTES)
            is_podcast_file = bool(PODCAST_FILE.match(plain_name(Path(name).name).lower()))
            rows, users = _plays(name, document, is_podcast_file, options, bad_rows, counts, seen)
            stats.update(counts)
            user = options.user or (users.pop() if len(users) == 1 else fallback)
            frame = clean_frame(
                pl.DataFrame(rows, schema=_FIELDS, orient="row"),
                ["artist_name", "release_name", "recording_name"],
            )
            unnamed = frame.get_column("artist_name").is_null()
            if unnamed.any():  # a name of control characters only
                rows_out = frame.get_column("_row").filter(unnamed).to_numpy()
                problem = "a track without an artist name (after removing control characters)"
                first = (int(rows_out[0]), problem)

                def first_bad(first: tuple[int, str] = first) -> tuple[int, str]:
                    return first  # bound now: the default, not the loop's later value

                bad_rows.add_many(name, rows_out, first_bad)
                frame = frame.filter(~unnamed)
            yield frame.select(
                pl.lit(user).alias("user"),
                (pl.col("end_ms") - pl.col("ms"))
                .cast(pl.Datetime("ms"))
                .dt.replace_time_zone("UTC")
                .alias("listened_at"),
                pl.lit(1, dtype=pl.Int64).alias("count"),
                pl.lit(None, dtype=pl.Utf8).alias("artist_id"),
                "artist_name",
                pl.lit(None, dtype=pl.Utf8).alias("artist_mbid"),
                "release_name",
                pl.lit(None, dtype=pl.Utf8).alias("release_mbid"),
                "recording_name",
                pl.lit(None, dtype=pl.Utf8).alias("recording_mbid"),
                pl.lit(None, dtype=pl.Utf8).alias("recording_msid"),
            )

    return lazy_frames(frames, LISTENS_SCHEMA)


def _plays(
    name: str,
    document: bytes,
    is_podcast_file: bool,
    options: ReaderOptions,
    bad_rows: BadRows,
    counts: dict[str, int],
    seen: set[int],
) -> tuple[list[tuple], set[str]]:
    """The plays of one history file as (record number, end_ms, ms, artist, album, title)
    rows, and the user names its records give."""
    try:
        records = json.loads(document)
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8", path=name) from None
    except ValueError as exc:
        raise DataError(f"not valid JSON ({str(exc).splitlines()[0]})", path=name) from None
    if not isinstance(records, list):
        raise DataError("not a Spotify streaming history (expected a JSON array)", path=name)
    low, high = time_bounds_ms()
    shortest = options.min_play_seconds * 1000
    rows: list[tuple] = []
    users: set[str] = set()
    for row, record in enumerate(records, start=1):
        play = _play(record)
        if isinstance(play, str):
            bad_rows.add(name, row, play)
            continue
        end_ms, ms, artist, album, title, episode, username = play
        if episode or is_podcast_file:
            counts["skipped_podcasts"] += 1
            continue
        if artist is None and title is None:
            counts["skipped_unnamed"] += 1  # Spotify lists such plays (of vanished content)
            continue
        if artist is None:
            bad_rows.add(name, row, "a track without an artist name")
            continue
        if not low <= end_ms - ms <= high:
            bad_rows.add(name, row, f"play time out of range ({bounds_text()})")
            continue
        if ms < shortest:
            counts["skipped_short_plays"] += 1
            continue
        key = hash((end_ms, ms, artist, title))
        if key in seen:
            counts["duplicates_dropped"] += 1
            continue
        seen.add(key)
        if username:
            users.add(username)
        rows.append((row, end_ms, ms, artist, album, title))
    return rows, users


def _play(record: Any) -> tuple | str:
    """(end ms, ms played, artist, album, title, is an episode, username), or the problem."""
    if not isinstance(record, dict):
        return "not a JSON object"
    extended = "ts" in record
    when = record.get("ts") if extended else record.get("endTime")
    end = _time_ms(when)
    if end is None:
        field = "ts" if extended else "endTime"
        return f"missing or unreadable end time ({field} {_shown(when)})"
    ms = record.get("ms_played" if extended else "msPlayed")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
        return f"play length {_shown(ms)} is not a number of milliseconds"
    if ms < 0 or ms > MAX_PLAY_MS:
        return f"play length {_shown(ms)} ms is {'negative' if ms < 0 else 'over a week'}"
    if extended:
        episode = any(
            record.get(k) is not None
            for k in ("episode_name", "spotify_episode_uri", "audiobook_title", "audiobook_uri")
        )
        artist = _text(record.get("master_metadata_album_artist_name"))
        album = _text(record.get("master_metadata_album_album_name"))
        title = _text(record.get("master_metadata_track_name"))
    else:
        episode = "podcastName" in record or "episodeName" in record
        artist, album, title = _text(record.get("artistName")), None, _text(record.get("trackName"))
    return end, int(ms), artist, album, title, episode, _text(record.get("username"))


def _time_ms(value: Any) -> int | None:
    """Epoch ms of an ISO-8601 time (naive ones are UTC), or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
