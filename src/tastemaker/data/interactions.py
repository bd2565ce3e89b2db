"""The ``Interactions`` object: a user x item matrix whose rows are users, always.

The original study handed a user x item matrix to code that expected item x user. Here the
orientation lives in the type: ``Interactions.user_items`` is a CSR matrix with one row per
user, checked against the vocabularies on construction, and ``item_users`` is derived from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.artifacts import (
    ArraySpec,
    CSRSpec,
    atomic_directory,
    check_arrays,
    load_arrays,
    read_manifest,
    save_arrays,
    write_manifest,
)
from tastemaker.data.metadata import ItemMetadata
from tastemaker.data.names import NameMatcher
from tastemaker.data.tracks import TrackData
from tastemaker.errors import ArtifactError

if TYPE_CHECKING:
    from tastemaker.data.names import NameMatcher

LEVELS = ("artist", "release", "recording")
FORMAT_VERSION = 1
KIND = "interactions"
# Sentinel for "last listened time unknown" inside ``last_listened`` (epoch seconds).
UNKNOWN_TIME = np.iinfo(np.int64).min

METADATA_COLUMNS = {
    "item": pl.Utf8,
    "name": pl.Utf8,
    "artist_name": pl.Utf8,
    "release_name": pl.Utf8,
    "recording_name": pl.Utf8,
    "artist_mbid": pl.Utf8,
    "release_mbid": pl.Utf8,
    "recording_mbid": pl.Utf8,
}


class Vocabulary:
    """Source ids (strings) <-> contiguous indices ``0..len-1``."""

    def __init__(self, ids: pl.Series | list[str] | np.ndarray) -> None:
        series = ids if isinstance(ids, pl.Series) else pl.Series(values=list(ids), dtype=pl.Utf8)
        self.ids = series.cast(pl.Utf8).rename("id")
        if self.ids.null_count():
            raise ValueError("vocabulary ids must not be null")
        if self.ids.n_unique() != len(self.ids):
            raise ValueError("vocabulary ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.ids.equals(other.ids)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {value: i for i, value in enumerate(self.ids.to_list())}

    def index(self, source_id: str) -> int:
        """Index of one source id; ``KeyError`` when unknown."""
        return self._index[str(source_id)]

    def get(self, source_id: str, default: int = -1) -> int:
        return self._index.get(str(source_id), default)

    def indices(self, source_ids: list[str] | pl.Series) -> np.ndarray:
        """Indices of many source ids, ``-1`` where unknown."""
        frame = pl.DataFrame({"id": pl.Series(source_ids, dtype=pl.Utf8)})
        lookup = pl.DataFrame({"id": self.ids, "index": np.arange(len(self), dtype=np.int64)})
        joined = frame.join(lookup, on="id", how="left", maintain_order="left")
        return joined["index"].fill_null(-1).to_numpy()

    def id(self, index: int) -> str:
        return self.ids[int(index)]

    def to_list(self) -> list[str]:
        return self.ids.to_list()


@dataclass(frozen=True, eq=False)
class ListenEvents:
    """Individual listens in index space, sorted by user then time (epoch seconds)."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    timestamp: np.ndarray  # int64, epoch seconds

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True, eq=False)
class TagAssignments:
    """Who tagged which item with what (HetRec ``user_taggedartists.dat``), in index space.

    Kept per user so that features can leave out a user's own assignments (no leakage).
    """

    user: np.ndarray  # int32, -1 where the tagger is not in the user vocabulary
    item: np.ndarray  # int32
    tag: np.ndarray  # int32
    tags: Vocabulary  # tag index -> tag name

    def item_tag_matrix(self, n_items: int) -> sp.csr_matrix:
        """Items x tags, each cell the number of assignments."""
        data = np.ones(len(self.item), dtype=np.float32)
        m = sp.csr_matrix((data, (self.item, self.tag)), shape=(n_items, len(self.tags)))
        m.sum_duplicates()
        return m


def _canonical_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.sum_duplicates()
    csr.sort_indices()
    # scipy wants indptr and indices of one dtype: int32 while it fits, else int64.
    index_dtype = np.int32 if csr.nnz < np.iinfo(np.int32).max else np.int64
    csr.indptr = csr.indptr.astype(index_dtype, copy=False)
    csr.indices = csr.indices.astype(index_dtype, copy=False)
    return csr


@dataclass(frozen=True, eq=False)
class Interactions:
    """Play counts of users on items, plus vocabularies and item metadata.

    ``user_items`` is CSR, rows = users, columns = items, values = play counts (float32).
    ``last_listened`` (optional) is aligned with ``user_items.data``: epoch seconds of the last
    listen of each pair, ``UNKNOWN_TIME`` where unknown. ``events`` (optional) holds the
    individual listens for session- and time-based work.
    """

    user_items: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary
    item_metadata: pl.DataFrame
    level: str = "artist"
    last_listened: np.ndarray | None = None
    events: ListenEvents | None = None
    tags: TagAssignments | None = None
    source: dict[str, Any] = field(default_factory=dict)
    # Tags, genres and facts of the items (``tastemaker.data.metadata``), where attached.
    metadata: ItemMetadata | None = None
    # Top recordings per item and per user (``tastemaker.data.tracks``), for playlists.
    tracks: TrackData | None = None
    # Users x users, 1 where the row's user named the column's user a friend (HetRec
    # ``user_friends.dat``); a side relation for the hybrid's social features.
    friends: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if not sp.issparse(self.user_items):
            raise TypeError("user_items must be a scipy sparse matrix")
        object.__setattr__(self, "user_items", _canonical_csr(self.user_items))
        n_users, n_items = self.user_items.shape
        if n_users != len(self.users) or n_items != len(self.items):
            raise ValueError(
                f"user_items has shape {self.user_items.shape} but there are {len(self.users)} "
                f"users and {len(self.items)} items (rows must be users)"
            )
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {self.level!r}")
        if self.item_metadata.height != n_items:
            raise ValueError("item_metadata needs exactly one row per item, in index order")
        if self.last_listened is not None and len(self.last_listened) != self.user_items.nnz:
            raise ValueError("last_listened must be aligned with user_items.data")
        if self.metadata is not None and self.metadata.n_items != n_items:
            raise ValueError("metadata needs exactly one row per item")
        if self.friends is not None and self.friends.shape != (n_users, n_users):
            raise ValueError("friends must be a users x users matrix")

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.user_items.shape[0]

    @property
    def n_items(self) -> int:
        return self.user_items.shape[1]

    @property
    def nnz(self) -> int:
        return self.user_items.nnz

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return self.nnz / cells if cells else 0.0

    @property
    def item_users(self) -> sp.csr_matrix:
        """The transpose (rows = items), for code that wants items first."""
        return self.user_items.T.tocsr()

    @property
    def item_names(self) -> pl.Series:
        return self.item_metadata["name"]

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the matrix and both vocabularies: identifies the training data."""
        h = hashlib.sha256()
        m = self.user_items
        h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
        for arr in (m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data):
            h.update(np.ascontiguousarray(arr).tobytes())
        for vocab in (self.users, self.items):
            h.update("\x1f".join(vocab.to_list()).encode())
        return h.hexdigest()

    # -- lookups -----------------------------------------------------------------------------
    @cached_property
    def name_matcher(self) -> NameMatcher:
        """Finds items by typed name (``tastemaker.data.names``): the one matcher of the CLI
        and the service, built on first use."""
        listeners = np.bincount(self.user_items.indices, minlength=self.n_items)
        return NameMatcher(self.items.to_list(), self.item_names.to_list(), listeners)

    def find_item(self, query: str) -> int:
        """Index of an item given its source id or its whole name as ``fold`` reads it (case,
        accents, punctuation, a leading "The"; of several, the most listened-to); KeyError if
        none. For typed text that may be misspelt, ``name_matcher.resolve``."""
        index = self.name_matcher.exact(query)
        if index is None:
            raise KeyError(query)
        return index

    # -- derived copies ----------------------------------------------------------------------
    def with_matrix(
        self,
        user_items: sp.spmatrix,
        last_listened: np.ndarray | None = None,
        events: ListenEvents | None = None,
        **source: Any,
    ) -> Interactions:
        """Same vocabularies and metadata, another matrix (used by splits and filters)."""
        return dataclasses.replace(
            self,
            user_items=user_items,
            last_listened=last_listened,
            events=events,
            source={**self.source, **source},
        )

    @classmethod
    def from_arrays(
        cls,
        user_ids: list | np.ndarray,
        item_ids: list | np.ndarray,
        counts: list | np.ndarray | None = None,
        item_names: dict[str, str] | None = None,
        level: str = "artist",
    ) -> Interactions:
        """Build from parallel arrays of source ids (handy for tests and small data)."""
        users_arr = np.asarray([str(u) for u in user_ids])
        items_arr = np.asarray([str(i) for i in item_ids])
        user_vocab, rows = np.unique(users_arr, return_inverse=True)
        item_vocab, cols = np.unique(items_arr, return_inverse=True)
        values = np.ones(len(rows), np.float32) if counts is None else np.asarray(counts)
        matrix = sp.csr_matrix(
            (values.astype(np.float32), (rows, cols)), shape=(len(user_vocab), len(item_vocab))
        )
        names = [(item_names or {}).get(i, i) for i in item_vocab.tolist()]
        metadata = empty_metadata(item_vocab.tolist(), names)
        return cls(
            matrix,
            Vocabulary(user_vocab.tolist()),
            Vocabulary(item_vocab.tolist()),
            metadata,
            level=level,
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the directory ``manifest.json`` + ``matrix.npz`` + parquet tables, atomically."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.write_into(tmp)
        return directory

    def write_into(self, tmp: Path) -> None:
        """Write all files and the manifest into an existing (temporary) directory."""
        m = self.user_items
        arrays = {
            "indptr": m.indptr,
            "indices": m.indices,
            "counts": m.data,
            "shape": np.asarray(m.shape, dtype=np.int64),
        }
        if self.last_listened is not None:
            arrays["last_listened"] = self.last_listened
        save_arrays(tmp / "matrix.npz", **arrays)
        # Rechunked: row groups follow chunks (data.tracks.TrackData.write_into says why).
        pl.DataFrame({"user": self.users.ids}).rechunk().write_parquet(tmp / "users.parquet")
        self.item_metadata.rechunk().write_parquet(tmp / "items.parquet")
        if self.events is not None:
            save_arrays(
                tmp / "events.npz",
                user=self.events.user,
                item=self.events.item,
                timestamp=self.events.timestamp,
            )
        if self.tags is not None:
            save_arrays(
                tmp / "tags.npz", user=self.tags.user, item=self.tags.item, tag=self.tags.tag
            )
            pl.DataFrame({"tag": self.tags.tags.ids}).write_parquet(tmp / "tag_names.parquet")
        if self.friends is not None:
            f = sp.csr_matrix(self.friends)
            save_arrays(
                tmp / "friends.npz",
                indptr=f.indptr,
                indices=f.indices,
                data=f.data.astype(np.float32),
                shape=np.asarray(f.shape, np.int64),
            )
        if self.metadata is not None:
            self.metadata.write_into(tmp)
        if self.tracks is not None:
            self.tracks.write_into(tmp)
        write_manifest(
            tmp,
            KIND,
            FORMAT_VERSION,
            level=self.level,
            users=self.n_users,
            items=self.n_items,
            interactions=self.nnz,
            fingerprint=self.fingerprint,
            source=json.loads(json.dumps(self.source, default=str)),
        )

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> Interactions:
        """Load a directory written by ``save`` (no pickle); ArtifactError if it is not one.

        Every array is checked against the vocabularies (``MATRIX_SPEC`` and friends) before
        scipy or numpy index with it.
        """
        directory = Path(directory)
        manifest = read_manifest(directory, kind=KIND, max_version=FORMAT_VERSION, verify=verify)
        try:
            users = Vocabulary(_utf8_column(directory / "users.parquet", "user"))
            metadata = pl.read_parquet(directory / "items.parquet")
            for column in ("item", "name"):
                if metadata.schema.get(column) != pl.Utf8:
                    raise ValueError(f"items.parquet needs a text column {column!r}")
            items = Vocabulary(metadata["item"])
            dims = {"users": len(users), "items": len(items)}
            arrays = load_arrays(directory / "matrix.npz")
            check_arrays(arrays, MATRIX_SPEC, directory / "matrix.npz", dims)
            matrix = COUNTS_MATRIX.build(arrays, (len(users), len(items)))
            events = tags = None
            if (directory / "events.npz").exists():
                ev = load_arrays(directory / "events.npz")
                check_arrays(ev, EVENTS_SPEC, directory / "events.npz", dims)
                events = ListenEvents(ev["user"], ev["item"], ev["timestamp"])
            if (directory / "tags.npz").exists():
                names = Vocabulary(_utf8_column(directory / "tag_names.parquet", "tag"))
                tg = load_arrays(directory / "tags.npz")
                check_arrays(tg, TAGS_SPEC, directory / "tags.npz", {**dims, "tags": len(names)})
                tags = TagAssignments(tg["user"], tg["item"], tg["tag"], names)
            friends = None
            if (directory / "friends.npz").exists():
                fr = load_arrays(directory / "friends.npz")
                check_arrays(fr, FRIENDS_SPEC, directory / "friends.npz", dims)
                friends = FRIENDS_MATRIX.build(fr, (len(users), len(users)))
            item_facts = ItemMetadata.read_from(directory, len(items))
            source = manifest.get("source", {})
            if not isinstance(source, dict):
                raise ValueError("the manifest's source must be a mapping")
            return cls(
                matrix,
                users,
                items,
                metadata,
                # JSON from the manifest, whatever it holds: __post_init__ checks it
                level=cast(str, manifest.get("level")),
                last_listened=arrays.get("last_listened"),
                events=events,
                tags=tags,
                source=source,
                metadata=item_facts,
                tracks=TrackData.read(directory, len(users), len(items)),
                friends=friends,
            )
        except (KeyError, ValueError, TypeError, OSError, pl.exceptions.PolarsError) as exc:
            raise ArtifactError(
                f"{directory}: inconsistent interactions directory ({exc})"
            ) from None


def _utf8_column(path: Path, column: str) -> pl.Series:
    table = pl.read_parquet(path)
    if table.schema.get(column) != pl.Utf8:
        raise ValueError(f"{path.name} needs a text column {column!r}")
    return table[column]


# What each array file of an interactions directory must hold ("users" / "items": the sizes of
# the vocabularies, "pairs": the matrix's stored values).
COUNTS_MATRIX = CSRSpec(
    ("users", "items"), "indptr", "indices", "counts", "shape", low=0, nnz="pairs"
)
MATRIX_SPEC: dict[str, ArraySpec | CSRSpec] = {
    "matrix": COUNTS_MATRIX,
    "last_listened": ArraySpec(("pairs",), "int", required=False),
}
EVENTS_SPEC: dict[str, ArraySpec | CSRSpec] = {
    "user": ArraySpec(("events",), "int", low=0, high="users"),
    "item": ArraySpec(("events",), "int", low=0, high="items"),
    "timestamp": ArraySpec(("events",), "int"),
}
FRIENDS_MATRIX = CSRSpec(("users", "users"), "indptr", "indices", "data", "shape", low=0)
FRIENDS_SPEC: dict[str, ArraySpec | CSRSpec] = {"friends": FRIENDS_MATRIX}
TAGS_SPEC: dict[str, ArraySpec | CSRSpec] = {
    "user": ArraySpec(("assignments",), "int", low=-1, high="users"),  # -1: not a known user
    "item": ArraySpec(("assignments",), "int", low=0, high="items"),
    "tag": ArraySpec(("assignments",), "int", low=0, high="tags"),
}


def empty_metadata(item_ids: list[str], names: list[str] | None = None) -> pl.DataFrame:
    """Item metadata with only ids and display names filled in."""
    n = len(item_ids)
    columns: dict[str, pl.Series] = {}
    for column, dtype in METADATA_COLUMNS.items():
        if column == "item":
            values = item_ids
        elif column == "name":
            values = names if names is not None else item_ids
        else:
            values = [None] * n  # type: ignore[list-item]  # an all-null column of any type
        columns[column] = pl.Series(column, values, dtype=dtype)
    return pl.DataFrame(columns)
