"""Readers of item metadata: HetRec 2K's tag assignments, MusicBrainz JSON dumps, a CSV.

Each returns ``MetadataRows``: tag rows (who tagged what, where the source says: HetRec) and
fact rows (name, year, country), each naming its item by ``id`` and names, to be joined to a
catalogue by ``matching.match_items``. Files are opened through ``readers.streams`` (integrity
checked, compressed or archived, lines bounded); a bad row is one DataError naming the file and
the row (or, under ``--on-bad-rows skip``, skipped and counted).

- ``hetrec``: a HetRec 2K folder (or its ``user_taggedartists.dat``): ``user_taggedartists.dat``
  (userID, artistID, tagID, day, month, year) + ``tags.dat`` (Latin-1) + ``artists.dat``;
  one row per assignment, weight 1, the tagger kept.
- ``musicbrainz``: MusicBrainz JSON data dumps, one entity per line (``artist``,
  ``release-group`` or ``recording``): ``id``, ``name`` (or ``title``), ``tags`` and
  ``genres`` as ``[{name, count}]``, and where present ``country``, ``life-span.begin`` or
  ``first-release-date`` (the year) and ``artist-credit`` (its first artist names a release
  or recording). Tags with a count below 1 (down-voted) are left out.
- ``csv``: ``item,tag[,weight]`` (comma; tab for ``.tsv``); a header line naming these columns
  (and optionally ``artist``: then ``item`` is the title at release / recording level) is
  used when present. ``item`` is an item id or name; weight defaults to 1 and must be a
  positive, finite number.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tastemaker.data.readers import ReaderOptions, first_line, require_file
from tastemaker.data.readers import hetrec as hetrec_reader
from tastemaker.data.readers.delimited import TextTable, structure_checks, text_frames
from tastemaker.data.readers.rows import BadRows, RowCheck, check_rows, parse_number
from tastemaker.data.readers.streams import (
    BLOCK_BYTES,
    line_blocks,
    members,
    plain_name,
)
from tastemaker.data.readers.streams import (
    first_line as first_raw_line,
)
from tastemaker.data.readers.text import clean_text
from tastemaker.errors import DataError

FORMATS = ("hetrec", "musicbrainz", "csv")
# MusicBrainz entities with many relations run to a few hundred KB a line.
MAX_JSON_LINE_BYTES = 16 << 20
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
TAG_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "artist": pl.Utf8(),
    "title": pl.Utf8(),
    "user": pl.Utf8(),
    "tag": pl.Utf8(),
    "weight": pl.Float32(),
    "genre": pl.Boolean(),
}
FACT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "artist": pl.Utf8(),
    "title": pl.Utf8(),
    "meta_name": pl.Utf8(),
    "year": pl.Int32(),
    "country": pl.Utf8(),
}


@dataclass
class MetadataRows:
    """What a metadata reader returns (see the module docstring)."""

    tags: pl.DataFrame
    facts: pl.DataFrame
    format: str
    path: str
    stats: dict[str, Any] = field(default_factory=dict)


def detect_format(path: Path) -> str:
    """The metadata format of ``path``; DataError when it cannot tell."""
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    if path.is_dir():
        if (path / "user_taggedartists.dat").is_file():
            return "hetrec"
        raise DataError("a folder without user_taggedartists.dat (HetRec 2K)", path=path)
    name = plain_name(path.name).lower()
    if name == "user_taggedartists.dat":
        return "hetrec"
    if name.endswith(JSON_SUFFIXES) or name.endswith((".tar", ".tar.xz", ".tar.gz", ".tar.zst")):
        return "musicbrainz"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise DataError(
        "cannot tell the metadata format (HetRec folder, MusicBrainz .json / .jsonl, .csv / .tsv)",
        path=path,
    )


def read_metadata(
    path: str | Path, format: str | None = None, options: ReaderOptions | None = None
) -> MetadataRows:
    """Read one metadata source (format detected unless given)."""
    path = Path(path)
    options = options or ReaderOptions()
    format = format or detect_format(path)
    if format not in FORMATS:
        raise DataError(f"unknown metadata format {format!r}; choose one of: {', '.join(FORMATS)}")
    stats: dict[str, Any] = {}
    bad_rows = BadRows(options, stats)
    reader = {"hetrec": read_hetrec, "musicbrainz": read_musicbrainz, "csv": read_csv}[format]
    tags, facts = reader(path, options, bad_rows)
    return MetadataRows(tags, facts, format, str(path), stats)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` in ``schema``; a text column already an Enum (tag names as codes) stays one."""
    return frame.select(
        pl.col(c)
        if c in frame.columns and isinstance(frame.schema[c], pl.Enum) and t == pl.Utf8
        else (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
        for c, t in schema.items()
    )


def tag_name(column: str) -> pl.Expr:
    """Tags as stored: cleaned, lower-case, trimmed, inner whitespace one space."""
    return (
        clean_text(pl.col(column))
        .str.to_lowercase()
        .str.strip_chars()
        .str.replace_all(r"\s+", " ")
        .alias("tag")
    )


# -- HetRec -------------------------------------------------------------------------------


def _integer_checks(columns: dict[str, str]) -> list[RowCheck]:
    return [
        RowCheck(
            pl.col(c).str.strip_chars().cast(pl.Int64, strict=False).is_null(),
            f"{what} {{value}} is not an integer",
            c,
        )
        for c, what in columns.items()
    ]


def read_hetrec(
    path: Path, options: ReaderOptions, bad_rows: BadRows
) -> tuple[pl.DataFrame, pl.DataFrame]:
    folder = path if path.is_dir() else path.parent
    tagged_path = folder / "user_taggedartists.dat"
    columns = ["userID", "artistID", "tagID", "year"]
    tagged = hetrec_reader.read_tsv(tagged_path, columns, options, bad_rows)
    checks = _integer_checks({"userID": "userID", "artistID": "artistID", "tagID": "tagID"})
    year = pl.col("year").str.strip_chars().cast(pl.Int32, strict=False)
    checks.append(RowCheck(year.is_null() | (year < 1900) | (year > 2100), "year {value}", "year"))
    tagged = check_rows(tagged.lazy(), checks, tagged_path, bad_rows).collect()
    tags = hetrec_reader.read_tsv(
        folder / "tags.dat", ["tagID", "tagValue"], options, bad_rows, "latin1"
    )
    artists = hetrec_reader.read_tsv(folder / "artists.dat", ["id", "name"], options, bad_rows)
    rows = (
        tagged.join(tags.select("tagID", "tagValue"), on="tagID", how="left")
        .join(artists.select("id", "name"), left_on="artistID", right_on="id", how="left")
        .with_columns(tag_name("tagValue"))
    )
    unknown_tag = rows.filter(pl.col("tag").is_null())
    if unknown_tag.height:
        first = unknown_tag.row(0, named=True)
        bad_rows.add_many(
            tagged_path,
            unknown_tag["_row"].to_numpy() + 1,
            lambda: (first["_row"] + 1, f"tagID {first['tagID']!r} is not in tags.dat"),
        )
    rows = rows.filter(pl.col("tag").is_not_null())
    tag_rows = rows.select(
        pl.col("artistID").str.strip_chars().alias("id"),
        pl.col("name").alias("artist"),
        pl.col("userID").str.strip_chars().alias("user"),
        "tag",
        pl.lit(1.0).alias("weight"),
        pl.lit(False).alias("genre"),
    )
    facts = artists.select(
        pl.col("id").str.strip_chars().alias("id"),
        pl.col("name").alias("artist"),
        pl.col("name").alias("meta_name"),
    )
    return conform(tag_rows, TAG_SCHEMA), conform(facts, FACT_SCHEMA)


# -- MusicBrainz ----------------------------------------------------------------------------

_TAG_LIST = pl.List(pl.Struct({"name": pl.Utf8, "count": pl.Int64}))
_CREDIT = pl.List(
    pl.Struct({"name": pl.Utf8, "artist": pl.Struct({"id": pl.Utf8, "name": pl.Utf8})})
)
MB_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "name": pl.Utf8(),
    "title": pl.Utf8(),
    "country": pl.Utf8(),
    "tags": _TAG_LIST,
    "genres": _TAG_LIST,
    "life-span": pl.Struct({"begin": pl.Utf8}),
    "first-release-date": pl.Utf8(),
    "artist-credit": _CREDIT,
}


def _is_json(name: str) -> bool:
    return name.endswith(JSON_SUFFIXES) or "." not in name.rsplit("/", 1)[-1]


def read_musicbrainz(
    path: Path, options: ReaderOptions, bad_rows: BadRows
) -> tuple[pl.DataFrame, pl.DataFrame]:
    limit = max(options.max_line_bytes, MAX_JSON_LINE_BYTES)
    entity_frames, tag_frames = [], []
    for name, stream in members(path, _is_json):
        for lines_before, data, _ in line_blocks(
            stream, max_line_bytes=limit, block_bytes=BLOCK_BYTES
        ):
            entities = _mb_block(name, lines_before, data, bad_rows)
            facts, tags = _mb_flatten(entities)
            entity_frames.append(facts)
            tag_frames.append(tags)
    if not entity_frames:
        raise DataError("no MusicBrainz entities (one JSON object per line) found", path=path)
    return conform(pl.concat(tag_frames), TAG_SCHEMA), conform(
        pl.concat(entity_frames), FACT_SCHEMA
    )


def _mb_block(name: str, lines_before: int, data: bytes, bad_rows: BadRows) -> pl.DataFrame:
    """The block's entities (with ``_row``, the 1-based line) in ``MB_SCHEMA``; lines that
    are not JSON objects of that shape go to ``bad_rows``."""
    lines = data.split(b"\n")
    numbers = [lines_before + i + 1 for i, line in enumerate(lines) if line.strip()]
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=MB_SCHEMA)
        if frame.height == len(numbers):
            return _mb_checked(frame.with_columns(_row=pl.Series(numbers)), name, bad_rows)
    except (pl.exceptions.PolarsError, ValueError):
        pass
    objects, kept = [], []
    for number, line in zip(numbers, (x for x in lines if x.strip()), strict=True):
        problem = _mb_problem(line)
        if problem:
            bad_rows.add(name, number, problem)
            continue
        objects.append(line)
        kept.append(number)
    if not objects:
        return pl.DataFrame(schema={**MB_SCHEMA, "_row": pl.Int64})
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(objects)), schema=MB_SCHEMA)
    return _mb_checked(frame.with_columns(_row=pl.Series(kept)), name, bad_rows)


def _mb_problem(line: bytes) -> str | None:
    """What is wrong with one line, for the slow path (None: it reads)."""
    try:
        obj = json.loads(line)
    except UnicodeDecodeError:
        return "not valid UTF-8"
    except ValueError as exc:
        return f"not valid JSON ({first_line(exc)})"
    if not isinstance(obj, dict):
        return "not a JSON object"
    for key in ("tags", "genres"):
        value = obj.get(key, [])
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            return f"{key} is not a list of {{name, count}} objects"
        for entry in value:
            count = entry.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int):
                return f"{key}: count {str(count)[:40]!r} is not an integer"
    try:
        pl.read_ndjson(io.BytesIO(line), schema=MB_SCHEMA)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        return f"unexpected field types ({first_line(exc)})"
    return None


def _mb_checked(frame: pl.DataFrame, name: str, bad_rows: BadRows) -> pl.DataFrame:
    missing = frame.filter(pl.col("id").is_null() | pl.coalesce("name", "title").is_null())
    if missing.height:
        row = int(missing["_row"][0])
        bad_rows.add_many(
            name, missing["_row"].to_numpy(), lambda: (row, "an entity without id or name")
        )
        frame = frame.filter(
            pl.col("id").is_not_null() & pl.coalesce("name", "title").is_not_null()
        )
    return frame


def _mb_flatten(entities: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    credit = pl.col("artist-credit").list.first().struct.field("artist")
    has_credit = pl.col("artist-credit").list.len().fill_null(0) > 0
    date = pl.coalesce(pl.col("life-span").struct.field("begin"), "first-release-date")
    year = date.str.slice(0, 4).cast(pl.Int32, strict=False)
    own_name = clean_text(pl.coalesce("name", "title"))
    facts = entities.select(
        "id",
        pl.when(has_credit)
        .then(clean_text(credit.struct.field("name")))
        .otherwise(own_name)
        .alias("artist"),
        pl.when(has_credit).then(own_name).alias("title"),
        own_name.alias("meta_name"),
        pl.when((year >= 1000) & (year <= 2100)).then(year).alias("year"),
        clean_text(pl.col("country")).alias("country"),
    )
    parts = []
    for key, genre in (("tags", False), ("genres", True)):
        part = (
            entities.select("id", pl.col(key).alias("entry"))
            .explode("entry")
            .drop_nulls("entry")
            .select(
                "id",
                _tag_name_expr(pl.col("entry").struct.field("name")),
                pl.col("entry").struct.field("count").fill_null(1).cast(pl.Float32).alias("weight"),
                pl.lit(genre).alias("genre"),
            )
        )
        parts.append(part)
    tags = (
        pl.concat(parts)
        .filter(pl.col("tag").is_not_null() & (pl.col("tag") != "") & (pl.col("weight") >= 1))
        .group_by("id", "tag")
        .agg(pl.col("weight").max(), pl.col("genre").any())
        .join(facts.select("id", "artist", "title"), on="id", how="left")
    )
    return facts, tags


def _tag_name_expr(expr: pl.Expr) -> pl.Expr:
    return (
        clean_text(expr)
        .str.to_lowercase()
        .str.strip_chars()
        .str.replace_all(r"\s+", " ")
        .alias("tag")
    )


# -- CSV ---------------------------------------------------------------------------------

CSV_ROLES = ("item", "tag", "weight", "artist")


def read_csv(
    path: Path, options: ReaderOptions, bad_rows: BadRows
) -> tuple[pl.DataFrame, pl.DataFrame]:
    require_file(path)
    separator = "\t" if plain_name(path.name).lower().endswith(".tsv") else ","
    line = (first_raw_line(path, options.max_line_bytes, strict=True) or b"").decode(
        "utf8", "replace"
    )
    fields = [f.strip().strip('"').lower() for f in line.rstrip("\r").split(separator)]
    header = bool(fields) and all(f in CSV_ROLES for f in fields) and {"item", "tag"} <= set(fields)
    names = fields if header else ["item", "tag", "weight"][: max(2, min(3, len(fields)))]
    table = TextTable(tuple(names), separator, '"', header=header)
    checks = _csv_checks(len(names), separator)
    artist_given = "artist" in names
    # Tags as integer codes from the first block on (a vocabulary is small, its rows many):
    # 10 M rows hold 4-byte codes, not strings, and are normalised once per distinct tag.
    categories = pl.Categories.random()
    parts = []
    # Checked and reduced block by block: only the few columns kept are ever held for every
    # row (10 M rows: the raw text of all of them would be several times larger).
    for frame in text_frames(path, table, options, bad_rows):
        if "weight" not in frame.columns:
            frame = frame.with_columns(weight=pl.lit(None, pl.Utf8))
        checked = check_rows(frame.lazy(), checks, path, bad_rows)
        # Checked and reduced in one plan: the block's rows are not materialised in between.
        part = checked.select(
            pl.col("item").str.strip_chars().alias("id"),
            # Without an artist column the item's id is also its name (matching falls
            # back to it), so it is not stored twice.
            (pl.col("artist") if artist_given else pl.lit(None, pl.Utf8)).alias("artist"),
            (pl.col("item") if artist_given else pl.lit(None, pl.Utf8)).alias("title"),
            pl.col("tag").cast(pl.Categorical(categories)),
            parse_number("weight").fill_null(1.0).cast(pl.Float32).alias("weight"),
            pl.lit(False).alias("genre"),
        ).collect()
        parts.append(part)
    tags = (
        normalised_codes(pl.concat(parts), categories) if parts else pl.DataFrame(schema=TAG_SCHEMA)
    )
    # A CSV states no facts (names, years, countries): nothing to add there.
    return conform(tags, TAG_SCHEMA), pl.DataFrame(schema=FACT_SCHEMA)


def _csv_checks(n_fields: int, separator: str) -> list[RowCheck]:
    number = parse_number("weight")
    return [
        *structure_checks(n_fields, separator),
        RowCheck(pl.col("item").is_null(), "missing item"),
        RowCheck(pl.col("tag").is_null(), "missing tag"),
        RowCheck(
            pl.col("weight").is_not_null() & number.is_null(),
            "weight {value} is not a number",
            "weight",
        ),
        RowCheck(
            pl.col("weight").is_not_null() & (~number.is_finite() | (number <= 0)),
            "weight {value} is not a positive, finite number",
            "weight",
        ),
    ]


def normalised_codes(rows: pl.DataFrame, categories: pl.Categories) -> pl.DataFrame:
    """``rows`` with their raw ``tag`` codes (``categories``, this read's own) as an Enum of
    the tag names as stored (``tag_name``, computed once per raw value); rows whose tag is
    left empty by that are dropped."""
    raw = categories.to_series()  # position = code
    stored = pl.DataFrame({"raw": raw}).select(tag_name("raw"))["tag"]
    vocabulary = pl.Enum(stored.drop_nulls().unique().sort())
    remap = stored.cast(vocabulary).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    remap = np.append(remap, -1)  # the code of a missing tag (last): dropped too
    codes = remap[rows["tag"].to_physical().fill_null(len(raw)).to_numpy()]
    kept = codes >= 0
    tags = pl.Series("tag", codes[kept].astype(np.uint32)).cat.to(vocabulary)
    return rows.filter(pl.Series(kept)).with_columns(tags)
