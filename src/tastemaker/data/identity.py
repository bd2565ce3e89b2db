"""One item per artist: the rule by which name-only listens join the items that have ids.

A listen with an id (an MBID, or a source's own artist id) is keyed by it; a listen with names
only is keyed by its normalised name, unless that name belongs to exactly one id in the same
data, in which case it joins that id's item (``docs/identity.md``). Both engines apply this
module: the local one on integer codes per distinct name (``reconcile_codes``), Spark on the
distinct names it collects (``resolve``), so the rule exists once.

The normalised name is ``tastemaker.data.names.fold`` (case, accents, punctuation, '&' read as
"and") of the first credited artist, as an MBID row keys on its credit's first MBID:

* "A feat. B", "A ft. B", "A featuring B", "A (feat. B)": always A;
* "A & B", "A, B", "A x B", "A vs. B": A when B is itself a name seen in the data ("Simon &
  Garfunkel" stays whole unless "Garfunkel" is an artist of its own); "A & the Bs & C":
  "A & the Bs" when "the Bs" is no such name but C is (the first join that splits counts);
* at release / recording level the key is that artist form and the folded title.

A name-only row is matched in two tiers: its whole folded credit against the folded names of
rows with ids, then its first credited artist against those names and their first credited
artists. Where a tier finds the form, exactly one id joins the row to that item; several ids
leave it on its own name key and count it as ambiguous. A row no tier matched joins the one id
whose name is one edit from its first credited artist (``near_spellings``, where
``NEAR_SPELLINGS`` is set: off by default); one edit from several ids' names, it stays apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from rapidfuzz.distance import OSA
from rapidfuzz.process import cpdist

from tastemaker.data.names import fold_series as names_fold_series

# Guest credits: whatever follows is never the artist ("Little Feat" has no space after it).
FEAT_CREDIT = r"(?is)\s*[\(\[]?\s*\b(?:feat\.?|ft\.?|featuring)\s.*$"
# Credits that may also be part of one artist's name: split only when the rest is an artist.
JOIN = r"(?:&|,|\s[xX]\s|\s(?i:vs)\.?\s)"
MAX_JOINS = 4  # split points tried per credit, first to last (credits rarely have more)
_MARK = "\x00"  # never in a name the readers pass (control characters are cleaned)
# At release / recording level: "artist | title".
KEY_SEPARATOR = " | "
# Outcomes of a name-only row: joined exactly, ambiguous, joined by a near spelling (one edit),
# near several ids' names (kept apart), no id.
RECONCILED, AMBIGUOUS, UNMATCHED = "reconciled", "ambiguous", "unmatched"
NEAR, NEAR_AMBIGUOUS = "near", "near_ambiguous"
STATUSES = (RECONCILED, AMBIGUOUS, NEAR, NEAR_AMBIGUOUS, UNMATCHED)
# Near spellings: at most one edit (a character added, dropped, changed, or two neighbours
# swapped) between folded names of at least NEAR_MIN_LENGTH characters (shorter names are too
# close to each other for a typo to be told from another artist), at most NEAR_MAX_LENGTH
# (longer ones are cut: their first characters are compared), touching no digit.
# Off by default: on a 5 M-listen synthetic dump (288,208 names) the tier joined 2,550 names,
# all of them distinct artists one edit apart ("Southern Crow", "Southern Crown"; synth makes
# no typos), and cost 20 s and 1.8 GB (docs/identity.md). A typo needs evidence a name alone
# does not give (it is far rarer than the name it misspells); until the rule has it, the
# tier runs only where this is set.
NEAR_SPELLINGS = False
NEAR_EDITS = 1
NEAR_MIN_LENGTH = 6
NEAR_MAX_LENGTH = 48
EXAMPLES = 10  # ambiguous names listed in the report, most listened to first


def fold_series(names: pl.Series) -> pl.Series:
    """``fold`` of each name (null stays null); a name that folds to nothing ("!!!") is
    matched as written, trimmed and case-folded, as the name matcher does."""
    present = names.is_not_null()
    given = names.filter(present)
    folded = names_fold_series(given)
    plain = given.str.strip_chars().str.to_lowercase()
    form = pl.select(
        pl.when(folded != "").then(folded).when(plain != "").then(plain).alias("form")
    ).to_series()
    out = pl.Series(names.name, [None] * len(names), dtype=pl.Utf8)
    return out.scatter(np.flatnonzero(present.to_numpy()), form) if len(form) else out


def name_forms(names: pl.Series) -> pl.DataFrame:
    """Per distinct name: ``full`` (the folded name), ``feat`` (without guest credits), and
    for each join of what is left (up to ``MAX_JOINS``), ``lead_i`` (the credit before the
    i-th join), ``next_i`` (the name right after it) and ``rest_i`` (everything after it):
    "A & the Bs & C" gives ("a", "the bs", "the bs and c") and ("a and the bs", "c", "c").

    Folding is the costly part: each distinct name is folded once, a name without guests is
    not folded again, and the pieces between joins are folded once each (a join is
    punctuation or a word between spaces, so the folded pieces joined by spaces are the
    folded whole)."""
    names = names.drop_nulls().unique().rename("name")
    full = fold_series(names)
    stripped = names.str.replace(FEAT_CREDIT, "")
    guests = (stripped != names).to_numpy()
    feat = full
    if guests.any():
        feat = full.clone().scatter(np.flatnonzero(guests), fold_series(stripped.filter(guests)))
    columns: dict[str, pl.Series] = {"name": names, "full": full, "feat": feat}
    joined = stripped.str.contains(JOIN).to_numpy()
    rows = np.flatnonzero(joined)
    # Each join between marks: [name, join, name, join, name, ...], every piece folded.
    parts = stripped.filter(joined).str.replace_all(JOIN, f"{_MARK}${{0}}{_MARK}")
    pieces = parts.str.split(_MARK).rename("pieces").to_frame().with_row_index("row")
    flat = pieces.explode("pieces")
    distinct = flat["pieces"].unique()
    folded = pl.DataFrame({"pieces": distinct, "form": fold_series(distinct).fill_null("")})
    flat = flat.join(folded, on="pieces", how="left", maintain_order="left")
    forms = flat.group_by("row", maintain_order=True).agg(pl.col("form"))["form"]

    def joined_forms(piece_lists: pl.Expr) -> pl.Expr:
        words = piece_lists.list.eval(pl.element().filter(pl.element() != ""))
        text = words.list.join(" ")
        return pl.when(text != "").then(text)

    frame = forms.to_frame("f").with_columns(pl.col("f").list.len().alias("size"))
    for i in range(1, MAX_JOINS + 1):
        present = pl.col("size") > 2 * i
        after = pl.col("f").list.slice(2 * i, None)
        picked = frame.select(
            pl.when(present).then(joined_forms(pl.col("f").list.slice(0, 2 * i - 1))),
            pl.when(present).then(joined_forms(after.list.slice(0, 1))).alias("next"),
            pl.when(present).then(joined_forms(after)).alias("rest"),
        )
        for column, values in zip(("lead", "next", "rest"), picked.get_columns(), strict=True):
            out = pl.Series(f"{column}_{i}", [None] * len(names), dtype=pl.Utf8)
            columns[f"{column}_{i}"] = out.scatter(rows, values) if len(rows) else out
    return pl.DataFrame(columns)


def credit_forms(names: pl.Series, forms: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per distinct name: ``full`` and ``credit``, the folded first credited artist. A join
    ("&", ",", "x", "vs.") splits the credit only where what follows it is a name among
    ``names``; the first such join counts. ``forms``: ``name_forms`` of a superset of
    ``names``, already computed (a name's forms do not depend on the other names)."""
    if forms is None:
        forms = name_forms(names)
    else:
        wanted = names.drop_nulls().unique().rename("name").to_frame()
        forms = forms.join(wanted, on="name", how="semi")
    known = pl.concat([forms["full"], forms["feat"]]).drop_nulls().unique().implode()
    credit = pl.col("feat")
    for i in range(MAX_JOINS, 0, -1):  # built inside out: the first join that splits wins
        second = pl.col(f"next_{i}").is_in(known) | pl.col(f"rest_{i}").is_in(known)
        credit = (
            pl.when(pl.col(f"lead_{i}").is_not_null() & second)
            .then(pl.col(f"lead_{i}"))
            .otherwise(credit)
        )
    return forms.select("name", "full", credit.alias("credit"))


def resolve(groups: pl.DataFrame, level: str, forms: pl.DataFrame | None = None) -> pl.DataFrame:
    """The rule on distinct name groups.

    ``groups``: one row per distinct ``artist`` (and ``title`` below artist level) with
    ``lo`` / ``hi``, the least and greatest id among rows with an id and these names (null
    where none has one), and ``name_listens``, the listens of name-only rows with them (0
    where none). ``forms``: see ``credit_forms``. Returns the groups that have name-only
    listens with ``full`` / ``credit`` (``credit_forms``), ``key`` (their name key, null
    when a name is missing), ``target`` (the id they join, null if none) and ``status``.
    """
    titled = level != "artist"
    forms = credit_forms(groups["artist"], forms).rename({"name": "artist"})
    frame = groups.join(forms, on="artist", how="left", nulls_equal=False)
    if titled:
        titles = groups["title"].drop_nulls().unique()
        frame = frame.join(
            pl.DataFrame({"title": titles, "title_form": fold_series(titles)}),
            on="title",
            how="left",
        )
    else:
        frame = frame.with_columns(pl.lit("", dtype=pl.Utf8).alias("title_form"))
    on = ["form", "title_form"]
    with_id = frame.filter(pl.col("lo").is_not_null() & pl.col("full").is_not_null())
    whole = with_id.select(pl.col("full").alias("form"), "title_form", "lo", "hi")
    first = with_id.select(pl.col("credit").alias("form"), "title_form", "lo", "hi")

    def evidence(parts: list[pl.DataFrame], suffix: str) -> pl.DataFrame:
        agg = pl.concat(parts).group_by(on).agg(pl.col("lo").min(), pl.col("hi").max())
        return agg.rename({"lo": f"lo{suffix}", "hi": f"hi{suffix}"})

    query = frame.filter(pl.col("name_listens") > 0)
    query = query.join(
        evidence([whole], "1"), left_on=["full", "title_form"], right_on=on, how="left"
    ).join(evidence([whole, first], "2"), left_on=["credit", "title_form"], right_on=on, how="left")
    found1, found2 = pl.col("lo1").is_not_null(), pl.col("lo2").is_not_null()
    status = (
        pl.when(found1 & (pl.col("lo1") == pl.col("hi1")))
        .then(pl.lit(RECONCILED))
        .when(found1)
        .then(pl.lit(AMBIGUOUS))
        .when(found2 & (pl.col("lo2") == pl.col("hi2")))
        .then(pl.lit(RECONCILED))
        .when(found2)
        .then(pl.lit(AMBIGUOUS))
        .otherwise(pl.lit(UNMATCHED))
    )
    key = pl.col("credit")
    if titled:
        key = pl.concat_str([key, pl.col("title_form")], separator=KEY_SEPARATOR)
    missing = pl.col("credit").is_null() | (titled and pl.col("title_form").is_null())
    query = query.with_columns(status.alias("status"))
    if NEAR_SPELLINGS:
        query = near_spellings(query, pl.concat([whole, first]))
    else:
        empty = pl.lit(None, dtype=query.schema["lo1"])
        query = query.with_columns(empty.alias("lo_near"), empty.alias("hi_near"))
    near = pl.col("status") == NEAR
    return query.select(
        *[c for c in groups.columns if c not in ("lo", "hi")],
        "full",
        "credit",
        pl.when(~missing).then(key).alias("key"),
        pl.when(~missing & (pl.col("status") == RECONCILED))
        .then(pl.coalesce("lo1", "lo2"))
        .when(~missing & near)
        .then(pl.col("lo_near"))
        .alias("target"),
        pl.when(~missing).then(pl.col("status")).alias("status"),
    )


def _deletions(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``frame`` with ``variant``: the text itself and each way of dropping one character of
    it (two texts one edit apart share a variant: symmetric deletion, as SymSpell finds
    candidates), one row each."""
    text = pl.col(column).str.slice(0, NEAR_MAX_LENGTH)
    parts = [frame.with_columns(text.alias("variant"))]
    for i in range(NEAR_MAX_LENGTH):
        longer = frame.filter(pl.col(column).str.len_chars() > i)
        if longer.height == 0:
            break
        dropped = pl.concat_str([text.str.slice(0, i), text.str.slice(i + 1)])
        parts.append(longer.with_columns(dropped.alias("variant")))
    return pl.concat(parts).unique()


def _digits(column: str) -> pl.Expr:
    return pl.col(column).str.replace_all(r"[^0-9]", "")


def near_spellings(query: pl.DataFrame, evidence: pl.DataFrame) -> pl.DataFrame:
    """``query`` with ``lo_near`` / ``hi_near`` (the least and greatest id among names of
    ids one edit from an unmatched row's credit, with the same title) and its status
    ``near`` (one id) or ``near_ambiguous`` (several). Candidates come from shared deletion
    variants (a hash join on distinct names, no all-pairs comparison) and are checked with
    rapidfuzz's optimal string alignment distance, vectorised over the pairs."""
    length = pl.col("credit").str.len_chars()
    wanted = (
        query.filter((pl.col("status") == UNMATCHED) & (length >= NEAR_MIN_LENGTH))
        .select("credit", "title_form")
        .unique()
    )
    named = evidence.filter(pl.col("form").str.len_chars() >= NEAR_MIN_LENGTH - NEAR_EDITS)
    empty = pl.lit(None, dtype=query.schema.get("lo1", pl.Utf8))
    if wanted.height == 0 or named.height == 0:
        return query.with_columns(empty.alias("lo_near"), empty.alias("hi_near"))
    named = named.group_by("form", "title_form").agg(pl.col("lo").min(), pl.col("hi").max())
    pairs = (
        _deletions(wanted, "credit")
        .join(_deletions(named, "form"), on=["variant", "title_form"])
        .select("credit", "title_form", "form", "lo", "hi")
        .unique(["credit", "title_form", "form"])
        # Numbers are part of a name's identity ("Sum 41", "Artist 10" and "Artist 11" are
        # others): an edit may not touch a digit.
        .filter(_digits("credit") == _digits("form"))
    )
    edits = cpdist(pairs["credit"].to_list(), pairs["form"].to_list(), scorer=OSA.distance)
    near = (
        pairs.filter(pl.Series(np.asarray(edits) <= NEAR_EDITS))
        .group_by("credit", "title_form")
        .agg(pl.col("lo").min().alias("lo_near"), pl.col("hi").max().alias("hi_near"))
    )
    query = query.join(near, on=["credit", "title_form"], how="left", nulls_equal=False)
    found = (pl.col("status") == UNMATCHED) & pl.col("lo_near").is_not_null()
    status = (
        pl.when(found & (pl.col("lo_near") == pl.col("hi_near")))
        .then(pl.lit(NEAR))
        .when(found)
        .then(pl.lit(NEAR_AMBIGUOUS))
        .otherwise(pl.col("status"))
    )
    return query.with_columns(status.alias("status"))


def summarize(resolved: pl.DataFrame) -> dict[str, Any]:
    """The counts an ingest reports: listens and name keys reconciled, left ambiguous, and
    left unmatched (name items with no id), with the most listened-to ambiguous names."""
    keyed = resolved.filter(pl.col("status").is_not_null())
    by_status = keyed.group_by("status").agg(
        pl.col("name_listens").sum().alias("listens"), pl.col("key").n_unique().alias("names")
    )
    counts = {row["status"]: row for row in by_status.iter_rows(named=True)}
    report: dict[str, Any] = {}
    for status in STATUSES:
        row = counts.get(status, {"listens": 0, "names": 0})
        report[f"{status}_listens"] = int(row["listens"])
        report[f"{status}_names"] = int(row["names"])
    for status in (AMBIGUOUS, NEAR_AMBIGUOUS):
        examples = (
            keyed.filter(pl.col("status") == status)
            .group_by("key")
            .agg(pl.col("name_listens").sum())
            .sort(["name_listens", "key"], descending=[True, False])
        )
        report[f"{status}_examples"] = examples["key"].head(EXAMPLES).to_list()
    return report


@dataclass
class Reconciliation:
    """Name-only rows' items from ``reconcile_codes``: per name group, the id code it joins
    (-1: none) or else its name key, whether its credit has guests (such rows name an item
    only when nothing else does); and the report (``summarize``)."""

    target: np.ndarray
    keys: pl.Series
    credited: np.ndarray  # the group's credit names more than its first artist
    report: dict[str, Any] = field(default_factory=dict)


def id_ranges(
    group_codes: np.ndarray, id_codes: np.ndarray, n_groups: int, chunk: int = 1 << 22
) -> tuple[np.ndarray, np.ndarray]:
    """Least and greatest id code per name group over the rows that have both (-1 where none).

    ``np.minimum.at`` over codes, in chunks: no sort, no row-sized temporaries."""
    none = np.iinfo(np.int32).max
    lo = np.full(n_groups + 1, none, dtype=np.int32)
    hi = np.full(n_groups + 1, -1, dtype=np.int32)
    for start in range(0, len(group_codes), chunk):
        groups = group_codes[start : start + chunk]
        ids = id_codes[start : start + chunk]
        groups = np.where(ids >= 0, groups, -1)  # rows without an id go to the spare slot
        np.minimum.at(lo, groups, np.where(ids >= 0, ids, none).astype(np.int32))
        np.maximum.at(hi, groups, ids)
    lo, hi = lo[:n_groups], hi[:n_groups]
    lo[hi < 0] = -1
    return lo, hi


def name_groups(
    names: list[tuple[np.ndarray, pl.Series]], id_codes: np.ndarray, fallback_rows: np.ndarray
) -> tuple[np.ndarray, int, pl.Series, pl.Series | None, np.ndarray, np.ndarray]:
    """The distinct names the rule looks at. Artist level: a group per artist name code,
    every row's group is its code. Below: a group per (artist, title) pair that a name-only
    row or a row with an id uses; the groups of the name-only rows, in their order. Also
    each group's artist and title and its least / greatest id code (-1: none)."""
    if len(names) == 1:
        codes, strings = names[0]
        lo, hi = id_ranges(codes, id_codes, len(strings))
        return codes, len(strings), strings, None, lo, hi
    (a_codes, a_strings), (b_codes, b_strings) = names
    width = len(b_strings) + 1

    def packed(rows: np.ndarray | slice) -> np.ndarray:
        a, b = a_codes[rows].astype(np.int64), b_codes[rows].astype(np.int64)
        return np.where((a < 0) | (b < 0), -1, a * width + b)

    fallback_packed = packed(fallback_rows)
    with_id = id_codes >= 0
    ranges = (
        pl.DataFrame({"p": packed(with_id), "id": id_codes[with_id]})
        .filter(pl.col("p") >= 0)
        .group_by("p")
        .agg(pl.col("id").min().alias("lo"), pl.col("id").max().alias("hi"))
    )
    distinct = pl.concat([ranges["p"], pl.Series("p", fallback_packed)]).unique().sort()
    distinct = distinct.filter(distinct >= 0)
    table = distinct.to_frame().join(ranges, on="p", how="left", maintain_order="left")
    p = distinct.to_numpy()
    group = np.searchsorted(p, fallback_packed).astype(np.int64)
    group[fallback_packed < 0] = -1
    return (
        group,
        len(p),
        a_strings.gather(p // width),
        b_strings.gather(p % width),
        table["lo"].fill_null(-1).to_numpy().astype(np.int32),
        table["hi"].fill_null(-1).to_numpy().astype(np.int32),
    )


def reconcile_codes(
    artists: pl.Series,
    titles: pl.Series | None,
    lo: np.ndarray,
    hi: np.ndarray,
    name_listens: np.ndarray,
    level: str,
    forms: pl.DataFrame | None = None,
) -> Reconciliation:
    """``resolve`` for the local engine: name groups given as aligned arrays (group g has
    artist ``artists[g]``, title ``titles[g]``, id codes ``lo[g]..hi[g]`` (-1: no id) and
    ``name_listens[g]``). Returns per group the id code to join and the name key."""
    columns = {
        "group": np.arange(len(artists), dtype=np.int64),
        "artist": artists,
        "lo": pl.Series(lo).set(pl.Series(lo < 0), None),
        "hi": pl.Series(hi).set(pl.Series(hi < 0), None),
        "name_listens": name_listens.astype(np.int64),
    }
    if titles is not None:
        columns["title"] = titles
    groups = pl.DataFrame(columns)
    resolved = resolve(groups, level, forms)
    target = np.full(len(artists), -1, dtype=np.int32)
    keys = pl.Series("key", [None] * len(artists), dtype=pl.Utf8)
    rows = resolved["group"].to_numpy()
    target[rows] = resolved["target"].fill_null(-1).to_numpy()
    keys = keys.scatter(rows, resolved["key"])
    credited = np.zeros(len(artists), dtype=bool)
    credited[rows] = (resolved["full"] != resolved["credit"]).fill_null(False).to_numpy()
    return Reconciliation(target, keys, credited, report=summarize(resolved))


__all__ = [
    "AMBIGUOUS",
    "KEY_SEPARATOR",
    "NEAR",
    "NEAR_AMBIGUOUS",
    "RECONCILED",
    "UNMATCHED",
    "Reconciliation",
    "credit_forms",
    "fold_series",
    "id_ranges",
    "name_forms",
    "name_groups",
    "near_spellings",
    "reconcile_codes",
    "resolve",
    "summarize",
]
