"""Item metadata: tags and genres as an item x tag matrix, and facts (name, year, country).

``ItemMetadata`` is what an ingested directory (and so every model folder's ``data/``) keeps
beside the listening matrix, in the catalogue's item index order:

- ``item_tags``: items x tags, float32 weights (MusicBrainz vote counts, a CSV's weights, or 1
  per assignment), summed over sources; rows of items nobody tagged are empty;
- ``tags``: the tag vocabulary (lower-case, trimmed names) and ``genre``: whether a source
  called the tag a genre (MusicBrainz ``genres``);
- ``facts``: one row per item: ``meta_name`` (the name the source gives), ``year``,
  ``country`` (null where unknown).

Per-user tag assignments (HetRec's ``user_taggedartists.dat``) are not folded in here: they stay
``Interactions.tags`` (one row per user, item, tag), so that a model can leave out what a user
tagged when it scores that user. ``readers`` reads the sources, ``matching`` joins them to the
catalogue's items, ``attach`` puts the result on an ``Interactions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec, check_arrays, load_arrays, save_arrays

TAGS_FILE = "metadata_tags.npz"
TAG_NAMES_FILE = "metadata_tag_names.parquet"
FACTS_FILE = "metadata_facts.parquet"
FILES = (TAGS_FILE, TAG_NAMES_FILE, FACTS_FILE)
FACT_COLUMNS: dict[str, pl.DataType] = {
    "meta_name": pl.Utf8(),
    "year": pl.Int32(),
    "country": pl.Utf8(),
}
ITEM_TAGS_MATRIX = CSRSpec(("items", "tags"), "indptr", "indices", "weights", "shape", low=0)
ITEM_TAGS_SPEC: dict[str, ArraySpec | CSRSpec] = {"item_tags": ITEM_TAGS_MATRIX}


def empty_facts(n_items: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            name: pl.Series(name, [None] * n_items, dtype=dtype)
            for name, dtype in FACT_COLUMNS.items()
        }
    )


@dataclass(frozen=True, eq=False)
class ItemMetadata:
    """Tags and facts of a catalogue's items (see the module docstring)."""

    item_tags: sp.csr_matrix
    tags: list[str]
    genre: np.ndarray  # bool, one per tag
    facts: pl.DataFrame

    def __post_init__(self) -> None:
        n_items, n_tags = self.item_tags.shape
        if n_tags != len(self.tags) or len(self.genre) != n_tags:
            raise ValueError("item_tags, tags and genre disagree on the number of tags")
        if self.facts.height != n_items:
            raise ValueError("facts needs exactly one row per item")

    @property
    def n_items(self) -> int:
        return self.item_tags.shape[0]

    @classmethod
    def empty(cls, n_items: int) -> ItemMetadata:
        return cls(
            sp.csr_matrix((n_items, 0), dtype=np.float32),
            [],
            np.zeros(0, bool),
            empty_facts(n_items),
        )

    def tagged_items(self) -> np.ndarray:
        """Boolean per item: has at least one tag."""
        return np.diff(self.item_tags.indptr) > 0

    def top_tags(self, item: int, n: int = 5) -> list[str]:
        """The item's ``n`` heaviest tags, heaviest first (ties by name)."""
        lo, hi = self.item_tags.indptr[item], self.item_tags.indptr[item + 1]
        cols, weights = self.item_tags.indices[lo:hi], self.item_tags.data[lo:hi]
        order = sorted(range(len(cols)), key=lambda k: (-weights[k], self.tags[cols[k]]))
        return [self.tags[cols[k]] for k in order[:n]]

    def with_items(self, n_items: int) -> ItemMetadata:
        """The same metadata over a catalogue grown to ``n_items`` (new items: no metadata)."""
        extra = n_items - self.n_items
        if extra < 0:
            raise ValueError("a catalogue does not shrink by adding items")
        tags = sp.vstack([self.item_tags, sp.csr_matrix((extra, len(self.tags)), dtype=np.float32)])
        facts = pl.concat([self.facts, empty_facts(extra)])
        return ItemMetadata(sp.csr_matrix(tags), self.tags, self.genre, facts)

    def subset(self, items: np.ndarray) -> ItemMetadata:
        """The rows of ``items`` (indices into this catalogue), in that order."""
        items = np.asarray(items, np.int64)
        return ItemMetadata(
            sp.csr_matrix(self.item_tags[items]),
            self.tags,
            self.genre,
            self.facts[items],
        )

    # -- persistence -----------------------------------------------------------------------
    def write_into(self, directory: Path) -> None:
        m = sp.csr_matrix(self.item_tags, dtype=np.float32)
        save_arrays(
            directory / TAGS_FILE,
            indptr=m.indptr,
            indices=m.indices,
            weights=m.data,
            shape=np.asarray(m.shape, np.int64),
        )
        pl.DataFrame(
            {"tag": pl.Series(self.tags, dtype=pl.Utf8), "genre": self.genre.astype(bool)}
        ).write_parquet(directory / TAG_NAMES_FILE)
        self.facts.write_parquet(directory / FACTS_FILE)

    @classmethod
    def read_from(cls, directory: Path, n_items: int) -> ItemMetadata | None:
        """The metadata of an ingested directory, None where it has none. Raises ValueError
        (the caller names the directory) when the files disagree with each other or the
        catalogue; every array is checked before scipy sees it."""
        if not (directory / TAGS_FILE).exists():
            return None
        names = pl.read_parquet(directory / TAG_NAMES_FILE)
        if names.schema.get("tag") != pl.Utf8 or names.schema.get("genre") != pl.Boolean:
            raise ValueError(f"{TAG_NAMES_FILE} needs columns tag (text) and genre (boolean)")
        if names["tag"].null_count() or names["tag"].n_unique() != names.height:
            raise ValueError(f"{TAG_NAMES_FILE}: tag names must be unique and not null")
        arrays = load_arrays(directory / TAGS_FILE)
        dims = {"items": n_items, "tags": names.height}
        check_arrays(arrays, ITEM_TAGS_SPEC, directory / TAGS_FILE, dims)
        matrix = ITEM_TAGS_MATRIX.build(arrays, (n_items, names.height))
        facts = pl.read_parquet(directory / FACTS_FILE)
        for column, dtype in FACT_COLUMNS.items():
            if facts.schema.get(column) != dtype:
                raise ValueError(f"{FACTS_FILE} needs a column {column!r} of type {dtype}")
        return cls(
            sp.csr_matrix(matrix, dtype=np.float32),
            names["tag"].to_list(),
            names["genre"].to_numpy().astype(bool),
            facts.select(list(FACT_COLUMNS)),
        )


__all__ = ["FILES", "ItemMetadata", "empty_facts"]
