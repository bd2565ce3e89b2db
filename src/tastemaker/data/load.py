"""One entry point for every command that takes data: an ingested directory, a raw source, or
the name of a public data set (``tastemaker datasets list``), fetched into the cache on first
use."""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.artifacts import MANIFEST
from tastemaker.data import datasets
from tastemaker.data.interactions import LEVELS, Interactions, TagAssignments, Vocabulary
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.readers import (
    ReaderOptions,
    SourceData,
    final_stats,
    read_source,
    reading,
)
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.errors import DataError, UsageError


def is_ingested(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def load_interactions(
    path: str | Path,
    format: str | None = None,
    level: str = "artist",
    options: ReaderOptions | None = None,
) -> Interactions:
    """Load an ingested directory, or read and reduce a raw source (or a data set, by name)
    on the fly."""
    if is_ingested(path) and format is None:
        return Interactions.load(path)
    if level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}; got {level!r}")
    path, format, options = resolve_source(path, format, options, level)
    options = dataclasses.replace(options or ReaderOptions(), level=level)
    source = read_source(path, format=format, options=options)
    return interactions_from_source(source, level=level)


def resolve_source(
    path: str | Path,
    format: str | None = None,
    options: ReaderOptions | None = None,
    level: str = "artist",
) -> tuple[Path, str | None, ReaderOptions | None]:
    """A data set name becomes its files in the cache (fetched if missing), with the reader
    and reader options it needs; anything else is returned as it is. A path that exists wins
    over a data set of the same name."""
    path = Path(path)
    name = str(path)
    if path.exists() or name not in datasets.DATASETS:
        if not path.exists() and "/" not in name and os.sep not in name:
            close = difflib.get_close_matches(name, list(datasets.DATASETS), n=1, cutoff=0.75)
            if close:
                raise DataError(
                    f"no such file, folder or data set; did you mean {close[0]!r}? "
                    "(tastemaker datasets list)",
                    path=name,
                )
        return path, format, options
    ds = datasets.dataset(name)
    if level not in ds.levels:
        raise UsageError(
            f"{name} can be read at level {' or '.join(ds.levels)} only (--level); got {level!r}"
        )
    local = datasets.fetch(name)
    if format is None and ds.format is not None:
        format = ds.format
        if ds.columns is not None and (options is None or options.columns is None):
            options = dataclasses.replace(
                options or ReaderOptions(),
                columns=list(ds.columns),
                delimiter=ds.delimiter,
                header=ds.header,
            )
    return local, format, options


def resolve_sources(
    sources: list[str | Path],
    format: str | None = None,
    options: ReaderOptions | None = None,
    level: str = "artist",
) -> tuple[list[Path], str | None, ReaderOptions | None]:
    """``resolve_source`` for each of several sources (``ingest``). A data set's reader and
    options apply when it is the only source, or when all sources are the same data set."""
    resolved = [resolve_source(s, format, options, level) for s in sources]
    paths = [path for path, _, _ in resolved]
    if format is None and len({(f, repr(o)) for _, f, o in resolved}) == 1:
        _, format, options = resolved[0]
    return paths, format, options


def interactions_from_source(source: SourceData, level: str = "artist") -> Interactions:
    """Reduce a reader's output to Interactions, attaching tag assignments where present."""
    with reading(source):
        interactions = interactions_from_listens(source.listens, level=level)
    # Skip counts are only final once the listens have been read.
    info = {"format": source.format, "paths": source.paths, **final_stats(source)}
    interactions = dataclasses.replace(interactions, source={**info, **interactions.source})
    require_interactions(interactions, source.paths, level)
    if source.tag_assignments is not None and level == "artist":
        interactions = dataclasses.replace(
            interactions, tags=index_tags(interactions, source.tag_assignments)
        )
    if source.friends is not None:
        interactions = dataclasses.replace(
            interactions, friends=index_friends(interactions, source.friends)
        )
    with reading(source):
        return attach_tracks(source.listens, interactions)


def require_interactions(interactions: Interactions, paths: list[str], level: str) -> None:
    """DataError when nothing could be read: an empty source, or no keys at this level."""
    if interactions.nnz:
        return
    where = paths[0] if len(paths) == 1 else None
    dropped = interactions.source.get("rows_without_item", 0)
    if dropped:
        raise DataError(
            f"none of the {dropped:,} rows has what a {level}-level item needs "
            f"({'names or MBIDs of the ' + level if level != 'artist' else 'an artist'}); "
            "try another --level",
            path=where,
        )
    raise DataError("no listens found", path=where)


def index_friends(interactions: Interactions, pairs: pl.DataFrame) -> sp.csr_matrix:
    """(user, friend) rows as a binary users x users matrix; pairs naming a user without
    listens, and self-pairs, are dropped. HetRec lists every friendship in both directions;
    the matrix keeps the rows as given."""
    user = interactions.users.indices(pairs["user"])
    friend = interactions.users.indices(pairs["friend"])
    keep = (user >= 0) & (friend >= 0) & (user != friend)
    n = interactions.n_users
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (user[keep], friend[keep])), shape=(n, n)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def index_tags(interactions: Interactions, assignments: pl.DataFrame) -> TagAssignments:
    """Turn (user, artist_id, tag) rows into index space; rows naming unknown items are dropped."""
    item = interactions.items.indices(assignments["artist_id"])
    keep = item >= 0
    kept = assignments.filter(pl.Series(keep))
    tag_names = kept["tag"].unique().sort()
    vocab = Vocabulary(tag_names)
    return TagAssignments(
        user=interactions.users.indices(kept["user"]).astype(np.int32),
        item=item[keep].astype(np.int32),
        tag=vocab.indices(kept["tag"]).astype(np.int32),
        tags=vocab,
    )
