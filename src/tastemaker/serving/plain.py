"""The fast paths' parsers: a request's inputs read without FastAPI's machinery where they are
written plainly (``routes.UserRoute``, ``routes.HistoryRoute``); None where they are not, and
FastAPI parses and validates the request as it would any other (every 422 is FastAPI's). Each
accepts nothing FastAPI would refuse and gives the values it would
(``tests/serving/test_history_route.py``, ``tests/serving/test_user_route.py``)."""

from __future__ import annotations

from typing import cast

import orjson

from tastemaker.serving.schemas import MAX_COUNT, MAX_ITEM_TEXT, MAX_N


def plain_history(body: bytes) -> tuple[list[str], list[float], bool] | None:
    """A posted ``HistoryRequest`` parsed by orjson, with the schema's checks written out:
    ``(items, counts, exclude_heard)`` where the body is plainly valid (the JSON types the
    schema names: strings, numbers, a boolean; no other keys), else None, and FastAPI parses
    and validates it as it would any body (every 422 comes from there). Accepts nothing the
    schema refuses and gives the values it would (``tests/serving/test_history_route.py``):
    18 us for 50 entries, where FastAPI's json.loads, content-type parsing and validation of
    50 entry models cost about 70 us."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    history = data.get("history")
    exclude_heard = data.get("exclude_heard", True)
    if (
        len(data) != 1 + ("exclude_heard" in data)  # "history" and at most exclude_heard
        or type(history) is not list
        or not history
        or type(exclude_heard) is not bool
    ):
        return None
    items: list[str] = []
    counts: list[float] = []
    for entry in history:
        if type(entry) is not dict:
            return None
        item = entry.get("item")
        count = entry.get("count", 1.0)
        if len(entry) != 1 + ("count" in entry):  # "item" and at most "count"
            return None
        if type(item) is not str or not 0 < len(item) <= MAX_ITEM_TEXT:
            return None
        # int or float, not bool; orjson has no NaN or Infinity, and reads integers beyond
        # 64 bits as floats: all of them above MAX_COUNT, refused here as by the schema.
        kind = type(count)
        if (kind is not float and kind is not int) or not 0 < count <= MAX_COUNT:
            return None
        items.append(item)
        counts.append(float(count))
    return items, counts, exclude_heard


def _plain_parameters(query: bytes, flags: tuple[bytes, ...]) -> tuple[int, ...] | None:
    """``n`` (default 10) and each of ``flags`` (default true) from a query string written
    plainly: each name at most once, ``n`` a decimal number in range without leading zeros,
    a flag exactly true or false, no other name; else None."""
    values = dict.fromkeys(flags, True)
    n = 10
    seen = set()
    for part in query.split(b"&") if query else ():
        key, equals, value = part.partition(b"=")
        if not equals or key in seen:
            return None
        seen.add(key)
        if key == b"n" and value.isdigit() and len(value) <= 4 and value[0] != ord("0"):
            n = int(value)
            if n > MAX_N:
                return None
        elif key in values and value in (b"true", b"false"):
            values[key] = value == b"true"
        else:
            return None
    return (n, *(values[flag] for flag in flags))


def plain_query(query: bytes) -> tuple[int, bool] | None:
    """``n`` and ``reasons`` of the history route's query string where written plainly
    (``_plain_parameters``); else None, and FastAPI parses and validates it."""
    return cast("tuple[int, bool] | None", _plain_parameters(query, (b"reasons",)))


def plain_user_query(query: bytes) -> tuple[int, bool, bool] | None:
    """``n``, ``exclude_heard`` and ``reasons`` of the user route's query string where written
    plainly (``_plain_parameters``); else None, and FastAPI parses and validates it."""
    parameters = _plain_parameters(query, (b"exclude_heard", b"reasons"))
    return cast("tuple[int, bool, bool] | None", parameters)
    seen = set()
    for part in query.split(b"&"):
        key, equals, value = part.partition(b"=")
        if not equals or key in seen:
            return None
        seen.add(key)
        if key == b"n" and value.isdigit() and len(value) <= 4 and value[0] != ord("0"):
            n = int(value)
            if n > MAX_N:
                return None
        elif key == b"reasons" and value in (b"true", b"false"):
            reasons = value == b"true"
        elif key == b"exclude_heard" and value in (b"true", b"false"):
            exclude_heard = value == b"true"
        else:
            return None
    return n, exclude_heard, reasons
