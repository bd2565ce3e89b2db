"""Diagnostics of an ``Interactions``: size, shape of the distributions, and what breaks CF.

``inspect_interactions`` returns a plain, JSON-ready dict (``tastemaker inspect --json``
prints it); ``report_rows`` turns it into (label, value) lines for a table. The warnings name
the traps the original study fell into: raw play counts spanning orders of magnitude used as
confidence, users with a single item, catalogues of one-listener items, near-empty matrices,
bot accounts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tastemaker.data.interactions import UNKNOWN_TIME, Interactions
from tastemaker.data.metadata.coverage import coverage

# Thresholds of the warnings (documented in the messages themselves).
COUNT_ORDERS_WARN = 3.0  # max / min play count >= 10**3
SINGLE_ITEM_USERS_WARN = 0.05
SINGLE_LISTENER_ITEMS_WARN = 0.5
DENSITY_WARN = 1e-4
TOP_SHARE_WARN = 0.5
BOT_LISTENS_PER_DAY = 500
MIN_EVAL_ITEMS = 5
# Keys of ``Interactions.source`` (the readers' ``SourceData.stats``) that inspect reports.
DUPLICATE_KEYS = ("duplicates_dropped", "duplicate_listens", "duplicates")
SKIPPED_KEYS = ("bad_rows_skipped", "skipped_rows", "skipped")


def distribution(values: np.ndarray) -> dict[str, float]:
    """min, quartiles, max and mean of a 1-d array (zeros for an empty one)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"min": 0, "q1": 0, "median": 0, "q3": 0, "max": 0, "mean": 0.0}
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "min": _number(q[0]),
        "q1": _number(q[1]),
        "median": _number(q[2]),
        "q3": _number(q[3]),
        "max": _number(q[4]),
        "mean": round(float(values.mean()), 3),
    }


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, near 1 = one takes all."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def top_share(values: np.ndarray, fraction: float = 0.01) -> float:
    """Share of the total held by the top ``fraction`` of entries (at least one)."""
    x = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    if x.size == 0 or x.sum() <= 0:
        return 0.0
    k = max(1, math.ceil(fraction * x.size))
    return float(x[:k].sum() / x.sum())


def inspect_interactions(interactions: Interactions) -> dict[str, Any]:
    """Everything worth knowing about a data set before fitting a model on it."""
    m = interactions.user_items
    n_users, n_items, nnz = interactions.n_users, interactions.n_items, interactions.nnz
    counts = m.data.astype(np.float64)
    user_listens = np.asarray(m.sum(axis=1)).ravel()
    user_items = np.diff(m.indptr)
    item_listens = np.bincount(m.indices, weights=counts, minlength=n_items)
    item_users = np.bincount(m.indices, minlength=n_items)
    listens = int(round(counts.sum()))

    report: dict[str, Any] = {
        "users": n_users,
        "items": n_items,
        "interactions": nnz,
        "listens": listens,
        "level": interactions.level,
        "density": nnz / (n_users * n_items) if n_users and n_items else 0.0,
        "per_user": {"listens": distribution(user_listens), "items": distribution(user_items)},
        "per_item": {"listens": distribution(item_listens), "users": distribution(item_users)},
        "popularity": {
            "gini": round(gini(item_listens), 4),
            "top_1pct_share": round(top_share(item_listens, 0.01), 4),
            "gini_listeners": round(gini(item_users), 4),
            "top_1pct_listener_share": round(top_share(item_users, 0.01), 4),
        },
        "play_counts": _play_counts(counts),
        "users_with_one_item": int((user_items == 1).sum()),
        "users_below_eval_minimum": int((user_items < MIN_EVAL_ITEMS).sum()),
        "items_with_one_listener": int((item_users == 1).sum()),
        "empty_names": _empty_names(interactions),
        "time_span": _time_span(interactions),
        "busiest_user_day": _busiest_day(interactions),
        "duplicates_dropped": _source_count(interactions.source, *DUPLICATE_KEYS),
        "skipped_rows": _source_count(interactions.source, *SKIPPED_KEYS),
        "events": len(interactions.events) if interactions.events is not None else 0,
        "tag_assignments": len(interactions.tags.tag) if interactions.tags is not None else 0,
        "friends": _friends(interactions),
        "metadata": coverage(interactions),
        "identity": _identity(interactions),
        "source": {
            k: v for k, v in interactions.source.items() if k in ("format", "paths", "level")
        },
    }
    report["warnings"] = _warnings(report)
    return report


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def _play_counts(counts: np.ndarray) -> dict[str, Any]:
    if counts.size == 0:
        return {"min": 0, "max": 0, "median": 0, "p99": 0, "orders_of_magnitude": 0.0}
    low, high = float(counts.min()), float(counts.max())
    return {
        "min": _number(low),
        "max": _number(high),
        "median": _number(np.median(counts)),
        "p99": _number(np.quantile(counts, 0.99)),
        "orders_of_magnitude": round(math.log10(high / low), 2) if low > 0 else None,
    }


def _identity(interactions: Interactions) -> dict[str, Any] | None:
    """What the identity rule did at ingest (``tastemaker.data.identity.summarize``), with
    the items left keyed by name; None where the source had no name-only listens to match
    or the data was ingested before the rule."""
    identity = interactions.source.get("identity")
    if not isinstance(identity, dict):
        return None
    counts: dict[str, Any] = {
        key: int(value)
        for key, value in identity.items()
        if key.endswith(("_listens", "_names")) and isinstance(value, int | float)
    }
    for kind in ("ambiguous", "near_ambiguous"):
        examples = identity.get(f"{kind}_examples")
        if isinstance(examples, list):
            counts[f"{kind}_examples"] = [str(name) for name in examples[:10]]
    return counts


def _friends(interactions: Interactions) -> dict[str, Any] | None:
    """The friendship relation (HetRec's ``user_friends.dat``), where the data has one: links
    as stored (a mutual friendship is two), users with a friend, friends per such user."""
    if interactions.friends is None:
        return None
    per_user = np.diff(interactions.friends.tocsr().indptr)
    with_friends = per_user[per_user > 0]
    return {
        "links": int(per_user.sum()),
        "users_with_friends": int(with_friends.size),
        "per_user": distribution(with_friends) if with_friends.size else None,
    }


def _empty_names(interactions: Interactions) -> int:
    names = interactions.item_metadata["name"]
    return int(names.is_null().sum()) + int((names.str.strip_chars().str.len_chars() == 0).sum())


def _time_span(interactions: Interactions) -> dict[str, Any] | None:
    if interactions.events is not None and len(interactions.events):
        times = interactions.events.timestamp
    elif interactions.last_listened is not None:
        times = interactions.last_listened[interactions.last_listened != UNKNOWN_TIME]
    else:
        return None
    if times.size == 0:
        return None
    first, last = int(times.min()), int(times.max())
    return {
        "first": datetime.fromtimestamp(first, UTC).isoformat(),
        "last": datetime.fromtimestamp(last, UTC).isoformat(),
        "days": round((last - first) / 86_400, 1),
        "from": "events" if interactions.events is not None else "last_listened",
    }


def _busiest_day(interactions: Interactions) -> dict[str, Any] | None:
    """Most listens by one user on one (UTC) day, and how many users exceed the bot rate."""
    events = interactions.events
    if events is None or len(events) == 0:
        return None
    day = events.timestamp // 86_400
    width = int(day.max() - day.min()) + 1
    keys, per_day = np.unique(
        events.user.astype(np.int64) * width + (day - day.min()), return_counts=True
    )
    users = keys // width
    heavy = np.unique(users[per_day > BOT_LISTENS_PER_DAY])
    top = int(np.argmax(per_day))
    return {
        "user": interactions.users.id(int(users[top])),
        "listens": int(per_day[top]),
        "users_over_threshold": int(heavy.size),
        "threshold": BOT_LISTENS_PER_DAY,
    }


def _source_count(source: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = source.get(key)
        if isinstance(value, int | float):
            return int(value)
    return None


def _warnings(r: dict[str, Any]) -> list[str]:
    out = []
    users, items = max(r["users"], 1), max(r["items"], 1)
    orders = r["play_counts"]["orders_of_magnitude"]
    if orders is not None and orders >= COUNT_ORDERS_WARN:
        pc = r["play_counts"]
        out.append(
            f"play counts span {orders:.1f} orders of magnitude ({pc['min']:,} to {pc['max']:,}):"
            " used raw as confidence they drown everything else; weight them (log1p, bm25)"
        )
    if r["users_with_one_item"] / users >= SINGLE_ITEM_USERS_WARN:
        out.append(
            f"{r['users_with_one_item']:,} users ({r['users_with_one_item'] / users:.0%}) have a"
            " single item: no co-occurrence to learn from and nothing to hold out; filter them"
            " (minimum items per user)"
        )
    if r["items_with_one_listener"] / items >= SINGLE_LISTENER_ITEMS_WARN:
        out.append(
            f"{r['items_with_one_listener']:,} items ({r['items_with_one_listener'] / items:.0%})"
            " have a single listener: the catalogue is dominated by items CF cannot place;"
            " consider a k-core filter (minimum users per item)"
        )
    if r["density"] < DENSITY_WARN:
        out.append(
            f"density {r['density']:.2e} is very low: most users share no item; expect weak"
            " collaborative signal (filter, or move up a level: recording -> release -> artist)"
        )
    if r["popularity"]["top_1pct_share"] >= TOP_SHARE_WARN:
        out.append(
            f"the top 1 % of items hold {r['popularity']['top_1pct_share']:.0%} of all listens:"
            " popularity will be a hard baseline; report it beside every model"
        )
    below = r["users_below_eval_minimum"]
    if below / users >= 0.5:
        out.append(
            f"{below:,} users ({below / users:.0%}) have fewer than {MIN_EVAL_ITEMS} items and"
            " take no part in the default evaluation split"
        )
    busy = r["busiest_user_day"]
    if busy and busy["users_over_threshold"]:
        out.append(
            f"{busy['users_over_threshold']:,} users listen more than {busy['threshold']:,}"
            f" times a day (up to {busy['listens']:,}): likely bots; filter them"
        )
    if r["empty_names"]:
        out.append(f"{r['empty_names']:,} items have no name")
    if r["interactions"] == 0:
        out.append("no interactions at all")
    return out


def _metadata_rows(meta: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not meta:
        return []
    rows = [
        (
            "metadata coverage",
            f"{meta['items_with_tags']:,} items with tags ({meta['item_share']:.1%} of items, "
            f"{meta['listen_share']:.1%} of listens)",
        )
    ]
    if "tags" in meta:
        rows.append(("metadata tags", f"{meta['tags']:,} ({meta['genres']:,} genres)"))
        rows.append(
            (
                "metadata facts",
                f"{meta['items_with_year']:,} items with a year, "
                f"{meta['items_with_country']:,} with a country",
            )
        )
    for entry in meta.get("sources", []):
        rows.append(
            (
                f"  {entry['format']}",
                f"{entry['path']}: {entry['items_matched']:,} of {entry['items_named']:,} items "
                f"matched, {entry['ambiguous_names']:,} ambiguous names, "
                f"{entry['tag_rows_matched']:,} of {entry['tag_rows']:,} tag rows",
            )
        )
    return rows


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of a report for a two-column table."""

    def dist(d: dict[str, float]) -> str:
        return (
            f"min {d['min']:,} · q1 {d['q1']:,} · median {d['median']:,} · q3 {d['q3']:,}"
            f" · max {d['max']:,} (mean {d['mean']:,})"
        )

    pop, pc = report["popularity"], report["play_counts"]
    rows = [
        ("level", report["level"]),
        ("users", f"{report['users']:,}"),
        ("items", f"{report['items']:,}"),
        ("interactions", f"{report['interactions']:,} (user, item) pairs"),
        ("listens", f"{report['listens']:,}"),
        ("density", f"{report['density']:.3%}"),
        ("listens per user", dist(report["per_user"]["listens"])),
        ("items per user", dist(report["per_user"]["items"])),
        ("listens per item", dist(report["per_item"]["listens"])),
        ("users per item", dist(report["per_item"]["users"])),
        (
            "popularity",
            f"Gini {pop['gini']:.3f} (listeners {pop['gini_listeners']:.3f}); top 1 % of items:"
            f" {pop['top_1pct_share']:.1%} of listens, {pop['top_1pct_listener_share']:.1%}"
            " of listeners",
        ),
        (
            "play counts",
            f"{pc['min']:,} to {pc['max']:,} (median {pc['median']:,}, p99 {pc['p99']:,})",
        ),
        ("users with one item", f"{report['users_with_one_item']:,}"),
        ("items with one listener", f"{report['items_with_one_listener']:,}"),
        ("empty names", f"{report['empty_names']:,}"),
    ]
    span = report["time_span"]
    rows.append(
        (
            "time span",
            f"{span['first'][:10]} to {span['last'][:10]} ({span['days']:,} days)"
            if span
            else "unknown (no timestamps)",
        )
    )
    busy = report["busiest_user_day"]
    if busy:
        rows.append(("busiest user-day", f"{busy['listens']:,} listens (user {busy['user']})"))
    if report["events"]:
        rows.append(("listen events", f"{report['events']:,} (timestamped)"))
    if report["tag_assignments"]:
        rows.append(("tag assignments", f"{report['tag_assignments']:,}"))
    friends = report.get("friends")
    if friends:
        median = friends["per_user"]["median"] if friends["per_user"] else 0
        rows.append(
            (
                "friends",
                f"{friends['links']:,} links; {friends['users_with_friends']:,} users with a "
                f"friend (median {median:,} friends)",
            )
        )
    rows += _metadata_rows(report.get("metadata"))
    for key, label in (("duplicates_dropped", "duplicates dropped"), ("skipped_rows", "skipped")):
        if report[key] is not None:
            rows.append((label, f"{report[key]:,}"))
    rows.extend(_identity_rows(report.get("identity")))
    return rows


def _identity_rows(identity: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The identity rule's lines: name-only listens joined to an MBID item, names of several
    MBIDs left apart, names with no MBID in the data."""
    if not identity:
        return []

    def line(kind: str, what: str) -> str:
        listens, names = identity.get(f"{kind}_listens", 0), identity.get(f"{kind}_names", 0)
        return f"{listens:,} listens, {names:,} {what}"

    rows = [
        ("reconciled", line("reconciled", "name keys joined to an MBID item")),
        ("ambiguous names", line("ambiguous", "names of several MBIDs, kept apart")),
        ("near spellings", line("near", "name keys one edit from one MBID's name, joined")),
        ("near, ambiguous", line("near_ambiguous", "one edit from several MBIDs, kept apart")),
        ("name-keyed", line("unmatched", "items with no MBID in the data")),
    ]
    for kind, label in (("ambiguous", "ambiguous"), ("near_ambiguous", "near, ambiguous")):
        examples = identity.get(f"{kind}_examples") or []
        if examples:
            rows.append((f"{label}, e.g.", ", ".join(examples[:5])))
    return rows
