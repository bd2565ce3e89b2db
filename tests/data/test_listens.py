"""Categorical decoding (``data/listens.decode_categorical``): codes and their strings."""

from __future__ import annotations

import numpy as np
import polars as pl

from tastemaker.data import listens
from tastemaker.data.listens import decode_categorical, new_categorical


def test_decoding_gives_every_rows_string_back_by_its_code(monkeypatch):
    monkeypatch.setattr(listens, "CHUNK_ROWS", 3)  # several chunks
    values = ["b", "a", None, "b", "c", None, "a", "é ü", ""]
    codes, strings = decode_categorical(pl.Series(values).cast(new_categorical()))
    assert codes.dtype == np.int32 and len(codes) == len(values)
    assert codes[2] == -1 and codes[5] == -1  # null
    assert [None if c < 0 else strings[int(c)] for c in codes] == values
    assert strings.n_unique() == len(strings) == 5  # one string per code


def test_a_column_of_nulls_or_no_rows_has_no_strings():
    for values in ([None, None], []):
        column = pl.Series(values, dtype=pl.Utf8).cast(new_categorical())
        codes, strings = decode_categorical(column)
        assert (codes == -1).all() and strings.dtype == pl.Utf8 and len(strings) == 0
