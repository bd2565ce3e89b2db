"""Which catalogue item a metadata row describes: the one rule every metadata source goes through.

A row names its item by an id (an MBID, or the source's own id such as HetRec's artistID) and
by names (the artist; at release / recording level also the title). The id wins where the
catalogue has an item of that id. Otherwise the folded names (``tastemaker.data.names.fold``:
case, accents, punctuation) must match exactly one item's folded names; a name that several
items share is ambiguous and left unmatched (counted, never guessed).

This is the one place metadata is joined to items, so that the identity rule of issue 15 §1
(``tastemaker.data.identity``) can take over here alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tastemaker.data.names import fold_series


@dataclass(frozen=True)
class Matched:
    """Per metadata row: the item index (-1: none), and whether its name was ambiguous."""

    item: np.ndarray  # int64
    ambiguous: np.ndarray  # bool


def name_keys(artist: pl.Series, title: pl.Series | None = None) -> pl.Series:
    """Folded ``artist`` (and ``title``, joined by " | "), null where a part is missing."""
    folded = _fold_series(artist)
    if title is None:
        return folded
    return pl.select(
        pl.concat_str([folded, _fold_series(title)], separator=" | ").alias("key")
    ).to_series()


def _fold_series(values: pl.Series) -> pl.Series:
    folded = fold_series(values)
    return pl.select(
        pl.when(folded.str.len_bytes() > 0).then(folded).otherwise(None).alias("key")
    ).to_series()


def catalogue_keys(item_metadata: pl.DataFrame, level: str) -> pl.Series:
    """The folded name key of each catalogue item (as ``name_keys`` builds them for rows)."""
    artist = item_metadata["artist_name"].fill_null(item_metadata["name"])
    if level == "artist":
        return name_keys(artist)
    return name_keys(artist, item_metadata[f"{level}_name"])


def name_index(item_metadata: pl.DataFrame, level: str) -> pl.DataFrame:
    """The catalogue's folded name keys: (key, index of the first item, items sharing it)."""
    keys = catalogue_keys(item_metadata, level)
    return (
        pl.DataFrame({"key": keys, "index": np.arange(item_metadata.height, dtype=np.int64)})
        .drop_nulls("key")
        .group_by("key")
        .agg(pl.col("index").min(), pl.len().alias("n"))
    )


def match_items(
    item_metadata: pl.DataFrame,
    level: str,
    ids: pl.Series,
    artists: pl.Series,
    titles: pl.Series | None = None,
    names: pl.DataFrame | None = None,
) -> Matched:
    """The catalogue item of each metadata row (see the module docstring).

    ``item_metadata`` is the catalogue's (``Interactions.item_metadata``); ``ids``, ``artists``
    and ``titles`` are the rows' id and names (nulls allowed); ``names`` is the catalogue's
    ``name_index`` where the caller already built it (matching several sources).
    """
    catalogue = pl.DataFrame(
        {"id": item_metadata["item"], "index": np.arange(item_metadata.height, dtype=np.int64)}
    )
    rows = pl.DataFrame({"id": ids.cast(pl.Utf8)})
    by_id = rows.join(catalogue, on="id", how="left", maintain_order="left")["index"]
    id_index = by_id.fill_null(-1).to_numpy().astype(np.int64)
    item = id_index.copy()
    ambiguous = np.zeros(len(item), bool)
    unmatched = np.flatnonzero(id_index < 0)
    if len(unmatched):  # only rows the id did not place are folded and matched by name
        names = name_index(item_metadata, level) if names is None else names
        take = pl.Series(unmatched)
        wanted_titles = titles.gather(take) if titles is not None and level != "artist" else None
        wanted = pl.DataFrame({"key": name_keys(artists.gather(take), wanted_titles)})
        found = wanted.join(names, on="key", how="left", maintain_order="left")
        shared = found["n"].fill_null(0).to_numpy() > 1
        index = found["index"].fill_null(-1).to_numpy().astype(np.int64)
        item[unmatched] = np.where(shared, -1, index)
        ambiguous[unmatched] = shared
    return Matched(item, ambiguous)
