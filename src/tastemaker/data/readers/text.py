"""The cleaning of text fields every reader applies.

Text fields (user ids, names, ids) are cleaned, not rejected (``clean_text``): NUL and the
other control characters are removed, tabs and line breaks become spaces, surrounding
whitespace is trimmed, and a field left empty counts as missing. A stray control character
in a song title is noise, not a reason to stop an ingest, and none may reach a name printed
in a table, a playlist file or a web page.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import polars as pl

# Removed: C0 controls but the whitespace ones, DEL, C1 controls but NEL.
_CONTROL = "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]"


# Become a space: tab, line feed, vertical tab, form feed, carriage return, NEL, U+2028/9.
_BREAKS = "[\t\n\x0b\x0c\r\x85\u2028\u2029]"


# Bytes of UTF-8 text that need cleaning (the C0 controls and DEL; C1 and U+2028/9 are
# looked for separately, being two and three bytes long).
_C0 = frozenset([*range(0x20), 0x7F])


# More than this many U+0080..U+00BF lead bytes in a block: clean it rather than look closer.
_C2_LOOKS = 10_000


def clean_text(column: str | pl.Expr) -> pl.Expr:
    """A text field as listens keep it: control characters (NUL included) removed, tabs and
    line breaks turned into spaces, and a field left blank by that null (missing)."""
    expr = pl.col(column) if isinstance(column, str) else column
    cleaned = expr.str.replace_all(_CONTROL, "").str.replace_all(_BREAKS, " ")
    result = pl.when(expr.is_null() | (cleaned.str.strip_chars().str.len_bytes() > 0)).then(cleaned)
    return result.alias(column) if isinstance(column, str) else result


def needs_cleaning(data: bytes, allowed: bytes = b"") -> bool:
    """Whether UTF-8 ``data`` holds a character ``clean_text`` changes, other than the
    control bytes in ``allowed`` (a text file's own separator and line breaks). Exact and
    fast: one ``bytes.translate`` keeps only the bytes that may start such a character, and
    only those found are looked at closely."""
    found = data.translate(None, _not_suspect(allowed))
    if not found:
        return False
    if found.translate(None, _not_control(allowed)):
        return True  # a C0 control (NUL included) or DEL
    if b"\r" in found and data.count(b"\r") != data.count(b"\r\n"):
        return True  # a carriage return that does not end a line
    if b"\xe2" in found and (b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data):
        return True  # U+2028 / U+2029
    if b"\xc2" in found:  # U+0080..U+009F are C2 80..C2 9F
        at, looks = data.find(b"\xc2"), 0
        while at >= 0:
            looks += 1
            if looks > _C2_LOOKS or (at + 1 < len(data) and 0x80 <= data[at + 1] < 0xA0):
                return True
            at = data.find(b"\xc2", at + 1)
    return False


@functools.cache
def _not_suspect(allowed: bytes) -> bytes:
    """The bytes ``needs_cleaning`` deletes first: all but controls, CR and C2 / E2."""
    suspect = (_C0 - set(allowed)) | {0x0D, 0xC2, 0xE2}
    return bytes(b for b in range(256) if b not in suspect)


@functools.cache
def _not_control(allowed: bytes) -> bytes:
    """All bytes but the controls ``allowed`` does not allow."""
    return bytes(b for b in range(256) if b not in _C0 - set(allowed))


def clean_frame(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """``frame`` with ``clean_text`` applied to those of ``columns`` that need it."""
    dirty = []
    for column in columns:
        joined = frame.get_column(column).str.join("").cast(pl.Binary)
        if joined.len() and needs_cleaning(joined[0] or b""):
            dirty.append(column)
    return frame.with_columns(clean_text(c) for c in dirty) if dirty else frame
