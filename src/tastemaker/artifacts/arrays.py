"""Arrays on disk without pickle (``.npz``, uncompressed, headers checked against sizes), and
their specs: what a reader expects of each array, checked before native code sees it."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from tastemaker.errors import ArtifactError


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named arrays to ``.npz`` (uncompressed: loading speed matters more than size)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; it would need pickle")
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its flags


def stream_arrays(
    path: str | Path, members: dict[str, tuple[np.dtype, int, Iterable[np.ndarray]]]
) -> None:
    """``save_arrays`` for arrays too large to hold at once: each member is given as its
    dtype, its length and an iterable of its chunks in order. The file is byte for byte what
    ``save_arrays`` writes for the concatenated arrays (ValueError if the lengths differ)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, (dtype, length, chunks) in members.items():
            dtype = np.dtype(dtype)
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (int(length),),
            }
            written = 0
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for chunk in chunks:
                    member.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
                    written += len(chunk)
            if written != length:
                raise ValueError(f"array {name!r}: {written} values written, {length} declared")


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` without pickle.

    Each member's header (dtype, shape) is read first and must account for exactly the bytes
    the member holds, uncompressed (as ``save_arrays`` writes): memory stays within the
    file's size, whatever a header claims.
    """
    path = Path(path)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{name} is compressed; tastemaker writes arrays uncompressed")
                with archive.open(info) as member:
                    arrays[name] = _read_member(member, name, info.file_size)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"{path}: cannot read arrays ({exc})") from None
    return arrays


def _read_member(member: Any, name: str, size: int) -> np.ndarray:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"{name}: unknown .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects; it would need pickle")
    count = math.prod(shape)
    if count * dtype.itemsize != size - member.tell():
        raise ValueError(f"{name}: its header does not match its size")
    data = np.frombuffer(member.read(count * dtype.itemsize), dtype=dtype, count=count)
    order: Literal["C", "F"] = "F" if fortran else "C"
    return data.reshape(shape, order=order).copy(order=order)


# -- checking arrays against what their reader expects -------------------------------------------
# A dimension of a spec: a length, a name whose length must agree wherever it appears (bound by
# the caller, e.g. "items", or by the first array that uses it), or None for any length.
Dim = int | str | None
KINDS = {"float": "f", "int": "iu", "bool": "b", "str": "U"}


@dataclass(frozen=True)
class ArraySpec:
    """What one saved array must be: shape, kind of values (float, int, bool, str) and range.

    ``low`` / ``high`` bound numbers (inclusive / exclusive, as for indices); floats must be
    finite unless ``finite=False``.
    """

    shape: tuple[Dim, ...]
    kind: str = "float"
    finite: bool = True
    low: float | None = None
    high: float | Dim = None
    required: bool = True


@dataclass(frozen=True)
class CSRSpec:
    """A CSR matrix saved as separate arrays: checked (monotone ``indptr`` from 0 to nnz,
    indices within the columns, finite data) before scipy sees it, since scipy trusts them
    (a bad ``indptr`` crashes the process, out-of-range indices allocate without bound)."""

    shape: tuple[Dim, Dim]
    indptr: str
    indices: str
    data: str
    shape_array: str | None = None  # the stored (rows, cols), where one is saved
    required: bool = True
    low: float | None = None  # bound on the values (data)
    nnz: str | None = None  # a dimension name bound to the number of stored values

    @classmethod
    def prefixed(
        cls, prefix: str, shape: tuple[Dim, Dim], data: str = "data", **options: Any
    ) -> CSRSpec:
        return cls(shape, f"{prefix}indptr", f"{prefix}indices", f"{prefix}{data}", **options)

    def names(self) -> list[str]:
        names = [self.indptr, self.indices, self.data]
        return names + [self.shape_array] if self.shape_array else names

    def arrays(self, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
        """The arrays ``build`` reads back, under this spec's names (the inverse of ``build``)."""
        arrays = {self.indptr: matrix.indptr, self.indices: matrix.indices, self.data: matrix.data}
        if self.shape_array:
            arrays[self.shape_array] = np.asarray(matrix.shape, np.int64)
        return arrays

    def build(self, arrays: dict[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
        """The matrix, once ``check_arrays`` has passed."""
        return sp.csr_matrix(
            (arrays[self.data], arrays[self.indices], arrays[self.indptr]), shape=shape
        )


def check_arrays(
    arrays: dict[str, np.ndarray],
    specs: Mapping[str, ArraySpec | CSRSpec],
    where: str | Path,
    dims: dict[str, int] | None = None,
) -> dict[str, int]:
    """Check ``arrays`` (as loaded) against ``specs``; ArtifactError naming the first problem.

    Array names the specs do not know are refused too. Returns the dimensions as bound
    (``dims`` plus the names the arrays fixed).
    """
    bound = dict(dims or {})
    known: set[str] = set()
    for label, spec in specs.items():
        if isinstance(spec, CSRSpec):
            known.update(spec.names())
            if spec.indptr not in arrays and not spec.required:
                continue
            _check_csr(arrays, label, spec, where, bound)
        else:
            known.add(label)
            if label not in arrays:
                if spec.required:
                    raise ArtifactError(f"{where}: array {label!r} is missing")
                continue
            _check_array(arrays[label], label, spec, where, bound)
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise ArtifactError(f"{where}: unexpected array(s) {unknown}; written by another version?")
    return bound


def _dimension(dim: Dim, bound: dict[str, int]) -> int | None:
    return bound.get(dim) if isinstance(dim, str) else dim


def _describe(shape: tuple[Dim, ...], bound: dict[str, int]) -> str:
    parts = [
        "any" if d is None else f"{d}={bound[d]}" if isinstance(d, str) and d in bound else str(d)
        for d in shape
    ]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _check_shape(
    array: np.ndarray, name: str, shape: tuple[Dim, ...], where: str | Path, bound: dict
) -> None:
    expected = _describe(shape, bound)
    ok = array.ndim == len(shape)
    if ok:
        for dim, size in zip(shape, array.shape, strict=True):
            want = _dimension(dim, bound)
            if want is None and isinstance(dim, str):
                bound[dim] = size  # first use names the length
            elif want is not None and size != want:
                ok = False
    if not ok:
        raise ArtifactError(f"{where}: {name} has shape {array.shape}; expected {expected}")


def _check_array(
    array: np.ndarray, name: str, spec: ArraySpec, where: str | Path, bound: dict
) -> None:
    if array.dtype.kind not in KINDS[spec.kind]:
        raise ArtifactError(f"{where}: {name} holds {array.dtype}; expected {spec.kind} values")
    _check_shape(array, name, spec.shape, where, bound)
    _check_values(
        array, name, spec.kind, spec.finite, spec.low, _upper_bound(spec.high, bound), where
    )


def _upper_bound(high: float | Dim, bound: dict[str, int]) -> float | None:
    """``high`` itself, or the size bound to its dimension name (None: not bound yet)."""
    return bound.get(high) if isinstance(high, str) else high


def _check_values(
    array: np.ndarray,
    name: str,
    kind: str,
    finite: bool,
    low: float | None,
    high: float | None,
    where: str | Path,
) -> None:
    if array.size == 0 or kind not in ("float", "int"):
        return
    if kind == "float" and finite and not np.isfinite(array).all():
        raise ArtifactError(f"{where}: {name} holds NaN or infinite values")
    values = array[np.isfinite(array)] if kind == "float" else array
    if values.size == 0:
        return
    if low is not None and values.min() < low:
        raise ArtifactError(f"{where}: {name} holds {values.min()}, below {low}")
    if high is not None and values.max() >= high:
        raise ArtifactError(f"{where}: {name} holds {values.max()}; must be below {high}")


def _check_csr(
    arrays: dict[str, np.ndarray], label: str, spec: CSRSpec, where: str | Path, bound: dict
) -> None:
    for name in spec.names():
        if name not in arrays:
            raise ArtifactError(f"{where}: array {name!r} of the {label} matrix is missing")
    if spec.shape_array is not None:
        stored = arrays[spec.shape_array]
        _check_array(stored, spec.shape_array, ArraySpec((2,), "int", low=0), where, bound)
        rows, cols = (int(x) for x in stored)
        for dim, size in zip(spec.shape, (rows, cols), strict=True):
            want = _dimension(dim, bound)
            if want is None and isinstance(dim, str):
                bound[dim] = size
            elif want is not None and size != want:
                raise ArtifactError(
                    f"{where}: the {label} matrix is {rows} x {cols}; "
                    f"expected {_describe(spec.shape, bound)}"
                )
    indptr, indices, data = (arrays[n] for n in (spec.indptr, spec.indices, spec.data))
    for name, array in ((spec.indptr, indptr), (spec.indices, indices)):
        if array.dtype.kind not in "iu" or array.ndim != 1:
            raise ArtifactError(f"{where}: {name} must be a 1-d integer array")
    _check_shape(indptr, spec.indptr, (_plus_one(spec.shape[0], bound),), where, bound)
    if spec.shape[0] is not None and _dimension(spec.shape[0], bound) is None:
        bound[spec.shape[0]] = len(indptr) - 1
    if len(indptr) == 0:
        raise ArtifactError(f"{where}: {spec.indptr} is empty")
    nnz = len(indices)
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise ArtifactError(
            f"{where}: {spec.indptr} must rise from 0 to the {nnz} stored values; it does not"
        )
    if data.ndim != 1 or len(data) != nnz:
        raise ArtifactError(f"{where}: {spec.data} must hold one value per index ({nnz})")
    if data.dtype.kind not in "fiub":
        raise ArtifactError(f"{where}: {spec.data} holds {data.dtype}; expected numbers")
    n_cols = _dimension(spec.shape[1], bound)
    if n_cols is None:
        raise ArtifactError(f"{where}: the {label} matrix has no known column count")
    _check_values(indices, spec.indices, "int", True, 0, n_cols, where)
    kind = "float" if data.dtype.kind == "f" else "int"
    _check_values(data, spec.data, kind, True, spec.low, None, where)
    if spec.nnz is not None:
        bound[spec.nnz] = nnz


def _plus_one(dim: Dim, bound: dict[str, int]) -> int | None:
    size = _dimension(dim, bound)
    return None if size is None else size + 1
