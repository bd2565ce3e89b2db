"""One copy of a model's large arrays for all the workers of ``serve --workers N``.

Each worker loads and validates the model directory itself (manifest, checksums, every array
against its spec: ``models.validation``), then swaps the model's large arrays (its learned
attributes, and the arrays of its sparse matrices, the training matrix among them) for
memory-mapped ``.npy`` files in the run's private folder (``serve`` makes it, 0700, and removes
it at exit). Mapped pages are the page cache's, so N workers hold one copy: the first loader
writes each file (atomically); every loader maps it copy-on-write (pages stay shared unless a
library writes to them, which a serving path does not), and uses the mapping only if it equals,
element for element, the array it has just validated, so native code never sees bytes that
were not checked. The file names carry the model's version (its manifest's hash): a reload
maps the new model's arrays beside the old ones.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

log = logging.getLogger("tastemaker.serving")

# Arrays smaller than this stay private: a file and a mapping each are not worth it.
MIN_SHARED_BYTES = 1 << 20
SPARSE_PARTS = ("data", "indices", "indptr")


class ArrayShare:
    """Memory-mapped copies of one model version's arrays in ``directory``."""

    def __init__(self, directory: str | Path, version: str) -> None:
        self.directory = Path(directory)
        self.version = version
        self.shared_bytes = 0

    def path(self, name: str) -> Path:
        """This model version's file ``name`` in the shared folder (e.g. the ANN graph)."""
        return self.directory / f"{self.version}-{name}"

    def share(self, name: str, array: np.ndarray) -> np.ndarray:
        """An array equal to ``array``, backed by the file every worker maps; ``array`` itself
        where it is small, holds objects, or the file does not hold the same values."""
        if array.nbytes < MIN_SHARED_BYTES or array.dtype.hasobject:
            return array
        path = self.path(f"{name}.npy")
        try:
            if not path.exists():
                self._write(path, array)
            mapped = np.load(path, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError) as exc:  # a full disk, an unreadable file: serve unshared
            log.warning("cannot share %s (%s); this worker keeps its own copy", path, exc)
            return array
        if (
            mapped.shape != array.shape
            or mapped.dtype != array.dtype
            or not np.array_equal(mapped, array)
        ):
            log.warning("%s does not hold the validated array; this worker keeps its own", path)
            return array
        self.shared_bytes += array.nbytes
        return mapped

    def _write(self, path: Path, array: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".array-", suffix=".npy", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, path)  # another worker may write the same bytes at once: either wins
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def share_model_arrays(model: object, share: ArrayShare, prefix: str = "") -> None:
    """Swap ``model``'s large array attributes, and the arrays of its CSR / CSC matrices (the
    training matrix included), for mapped equal ones. Call after validation, before any
    structure is derived from them (an index, a solver). Also for other objects built
    deterministically from the model (the name matcher's arrays), with their own ``prefix``."""
    for attribute, value in list(vars(model).items()):
        name = prefix + attribute
        if isinstance(value, np.ndarray):
            setattr(model, attribute, share.share(name, value))
        elif sp.issparse(value) and value.format in ("csr", "csc"):
            for part in SPARSE_PARTS:
                setattr(value, part, share.share(f"{name}.{part}", getattr(value, part)))
