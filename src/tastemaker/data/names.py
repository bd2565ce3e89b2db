"""Names as people type them: one folding rule and the as-you-type matcher built on it.

``fold`` is the single definition of "the same name" (case, accents, punctuation, '&'); the
service's search box, the CLI's ``--item`` and anything else that turns typed text into an
item use ``NameMatcher``, so they agree on what a name means and on which item comes first.

Ranking (``NameMatcher.search``): exact (the whole name, a leading "The" optional) > the name
starts with the text > a later word starts with it > a close spelling (rapidfuzz), each tier
most listened-to first. One exception, because the text may be unfinished: an obscure exact
match ("K", 1 listener) gives way to at most two far more popular names that start with the
text ("Katy Perry"). ``resolve`` is for text that is the whole name (the CLI): it answers one
item only when the match is unambiguous, otherwise candidates for "did you mean".
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

# -- folding -----------------------------------------------------------------------------------
# Letters that NFKD leaves whole but people type as plain Latin ones.
_LETTERS = {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
_LETTER = re.compile(f"[{''.join(_LETTERS)}]")
# Diacritics as NFKD splits them off Latin, Greek and Cyrillic letters (U+0300-U+036F). Marks
# of other scripts (kana voicing, Indic vowel signs) are part of the letter and stay.
_ACCENTS = re.compile("[\u0300-\u036f]")
# The rules look at horizontal space only, so that they never reach across the "\n" between
# the names ``fold_many`` joins; each pattern starts with its literal, which re finds fast.
_LONE_PLUS = re.compile(r"\+(?<=[^\S\n]\+)(?=[^\S\n])")  # "Florence + the Machine"
_STYLISED_I = re.compile(r"!(?<=[^\W\d_]!)(?=[^\W\d_])")  # "P!nk" is typed "pink"
# Dropped without a space: "Guns N' Roses" -> "guns n roses", "R.E.M." -> "rem", "3OH!3" -> "3oh3".
_JOINING = re.compile("['’‘`´.!]")
_SEPARATORS = re.compile(r"(?:[^\w\n]|_)+")  # everything else that is not a letter or digit
THE = "the "


def fold(text: str) -> str:
    """The form in which two spellings of a name are equal: ``fold("Björk") == "bjork"``.

    NFKD with Latin / Greek / Cyrillic accents removed (then NFC, so other scripts keep their
    letters), case folded, '&' and a lone '+' read as "and", '$' as 's' and '!' between letters
    as 'i' (Ke$ha, P!nk), apostrophes, dots and any other '!' dropped, every other run of
    punctuation or space one space. A leading "the" is kept (``NameMatcher`` treats it as
    optional). Pure and cheap: the one definition of "the same name" for any layer.
    """
    return _fold_lines(text.replace("\n", " "))


def fold_many(texts: Sequence[str]) -> list[str]:
    """``[fold(text) for text in texts]``, in a few passes over one joined string: the same
    rules at a fraction of the cost for a catalogue's names."""
    if not texts:
        return []
    return _fold_lines("\n".join(text.replace("\n", " ") for text in texts)).split("\n")


# Names ``fold`` changes only by case, dropped apostrophes / dots and runs of spaces: plain ASCII
# letters, digits, spaces, "'" and ".". Most real names are, or become so once their accents are
# removed (NFKD, marks dropped, NFC: ``fold``'s first step); polars folds those without Python.
_PLAIN = r"^[A-Za-z0-9 '.]*$"


def fold_series(texts: pl.Series) -> pl.Series:
    """``fold`` of each value (null stays null), vectorised: plain names (``_PLAIN`` as given
    or once unaccented) by polars string kernels in one pass, the rest by ``fold_many``, once
    per distinct value."""
    text = pl.col("text")
    unaccented = text.str.normalize("NFKD").str.replace_all(_ACCENTS.pattern, "")
    # Removing accents is fold's first step: a name plain after it folds as a plain one.
    base = pl.when(text.str.contains(_PLAIN)).then(text).otherwise(unaccented.str.normalize("NFC"))
    frame = (
        texts.cast(pl.Utf8)
        .to_frame("text")
        .lazy()
        .select(base.alias("base"))
        .select(
            pl.col("base")
            .str.to_lowercase()
            .str.replace_all("['.]", "")
            .str.replace_all(" {2,}", " ")
            .str.strip_chars(" ")
            .alias("form"),
            (~pl.col("base").str.contains(_PLAIN)).fill_null(False).alias("slow"),
        )
        .collect()
    )
    folded, slow = frame["form"], frame["slow"].to_numpy()
    if not slow.any():
        return folded.rename(texts.name)
    others = texts.cast(pl.Utf8).filter(pl.Series(slow))
    distinct = others.unique()
    forms = pl.DataFrame({"text": distinct, "form": fold_many(distinct.to_list())})
    found = others.to_frame("text").join(forms, on="text", how="left", maintain_order="left")
    return folded.scatter(np.flatnonzero(slow), found["form"]).rename(texts.name)


def _fold_lines(text: str) -> str:
    # ``fold`` on each line of ``text`` (lines never hold anything but names).
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = unicodedata.normalize("NFC", _ACCENTS.sub("", text))
    text = text.casefold()
    if not text.isascii():
        text = _LETTER.sub(lambda m: _LETTERS[m.group()], text)
    text = _LONE_PLUS.sub("and", text.replace("&", " and ").replace("$", "s"))
    text = _JOINING.sub("", _STYLISED_I.sub("i", text))
    # Runs of anything else are one space by now, so at most one space meets each "\n".
    text = _SEPARATORS.sub(" ", text).replace(" \n", "\n").replace("\n ", "\n")
    return text.strip(" ")


def without_article(folded: str) -> str:
    """``folded`` without a leading "the " ("the beatles" -> "beatles"; "the the" stays)."""
    rest = folded[len(THE) :] if folded.startswith(THE) else ""
    return rest or folded


def _key(text: str, folded: str | None = None) -> str:
    # A name of punctuation only ("!!!") folds to nothing; it is then matched as written.
    return (fold(text) if folded is None else folded) or text.strip().casefold()


# -- matching ----------------------------------------------------------------------------------
# Bytes above any UTF-8 byte: ``prefix + _MAX_UTF8`` sorts after every key starting with it.
_MAX_UTF8 = b"\xff"
# Kinds of prefix key: the name without its article, the name with it, a later word onwards.
_CORE, _FULL, _WORD = 0, 1, 2
MAX_TEXT = 256  # longer text is searched by its start: typed names are short
FUZZY_CUTOFF = 75.0  # rapidfuzz ratio (0..100) below which a spelling is not "close"
FUZZY_MIN_LENGTH = 3  # shorter text has too few letters to be misspelt recognisably
FUZZY_CANDIDATES = 128  # names sharing the most trigrams with the text, then scored exactly
TRIGRAM_BLOCK = 16_384  # names per block when building the trigram postings
# Close spellings of more listened-to names rank a little higher: at most this many points.
POPULARITY_POINTS = 4.0
# A close spelling of the name's start (or a later word's) as far as typed counts a little less
# than one of the whole name.
START_WEIGHTS = {_CORE: 0.95, _WORD: 0.9}
_START_WEIGHT = np.array([START_WEIGHTS[_CORE], 0.0, START_WEIGHTS[_WORD]])  # by key kind
# A near-exact hit of a lower tier goes ahead of hits of higher tiers only with at least this
# many times their listeners, and at most DEMOTE_PLACES hits do. Near-exact: a prefix or word
# hit, or a close spelling scoring at least NEAR_EXACT (about one typo in a short name).
DEMOTE_RATIO = 10
DEMOTE_PLACES = 2
NEAR_EXACT = 80.0
# resolve: a close spelling is taken as meant when it scores at least this and leads the next
# candidate by RESOLVE_MARGIN points; a prefix when it is the only one and covers half the name.
RESOLVE_FUZZY = 85.0
RESOLVE_MARGIN = 5.0


@dataclass(frozen=True)
class Hit:
    """One search result: the item's index, how well it matches (0..100) and how."""

    index: int
    score: float
    how: str  # "id", "name", "prefix", "word", "fuzzy" or "popular"


@dataclass(frozen=True)
class Resolution:
    """``index`` when the text names one item unambiguously, else None and ``candidates``."""

    index: int | None
    how: str | None = None
    candidates: list[int] = field(default_factory=list)


class NameMatcher:
    """Finds items by typed name; built once per catalogue (ids, names, listener counts)."""

    def __init__(
        self, ids: Sequence[str], names: Sequence[str | None], listeners: np.ndarray
    ) -> None:
        if not (len(ids) == len(names) == len(listeners)):
            raise ValueError("ids, names and listeners must have one entry per item")
        self.ids = list(ids)
        # Items without a name are found by their id.
        self.names = [name if name else item for name, item in zip(names, self.ids, strict=True)]
        self.listeners = np.asarray(listeners, dtype=np.int64)
        self._id_index = {item: i for i, item in enumerate(self.ids)}
        self._popular = np.argsort(-self.listeners, kind="stable")
        self._max_log = math.log1p(max(int(self.listeners.max(initial=0)), 1))

        # Only the sorted keys and arrays stay after the build (a 200,000-name catalogue's
        # strings are most of the matcher's memory); the folded forms are temporaries.
        folded = [_key(n, f) for n, f in zip(self.names, fold_many(self.names), strict=True)]
        core = [without_article(f) for f in folded]  # spaced, article removed
        self._build_prefix_keys(folded, core)
        # Each item's keys (positions in the sorted list), for scoring close spellings, and
        # the position of its name without spaces or article.
        self._item_keys = np.argsort(self._key_items, kind="stable")
        counts = np.bincount(self._key_items, minlength=len(self.ids))
        self._item_key_ptr = np.concatenate([[0], np.cumsum(counts)])
        is_core = self._key_kinds == _CORE
        self._core_key = np.empty(len(self.ids), np.int64)
        self._core_key[self._key_items[is_core]] = np.flatnonzero(is_core)
        self._build_trigrams(core)

    def _build_prefix_keys(self, folded: list[str], core: list[str]) -> None:
        """Sorted prefix keys without spaces ("ac dc" and "acdc" both find AC/DC): the name
        without its article, the name with it, and the name from each later word on; built
        and sorted in polars (UTF-8 byte order is code point order, which ``bisect`` uses)."""
        names = (
            pl.DataFrame(
                {"full": folded, "core": core},
                schema={"full": pl.Utf8, "core": pl.Utf8},
            )
            .with_row_index("item")
            .with_columns(key=pl.col("core").str.replace_all(" ", "", literal=True))
        )
        whole = names.select("item", "key", kind=pl.lit(_CORE, pl.Int8))
        full = names.filter(pl.col("full") != pl.col("core")).select(
            "item",
            key=pl.col("full").str.replace_all(" ", "", literal=True),
            kind=pl.lit(_FULL, pl.Int8),
        )
        words = (
            names.select("item", "key", word=pl.col("core").str.split(" "))
            .explode("word")
            .with_columns(length=pl.col("word").str.len_chars())
            .with_columns(
                position=pl.int_range(pl.len()).over("item"),
                offset=pl.col("length").cum_sum().over("item") - pl.col("length"),
            )
            .filter(pl.col("position") > 0)
            .select(
                "item", key=pl.col("key").str.slice(pl.col("offset")), kind=pl.lit(_WORD, pl.Int8)
            )
        )
        keys = pl.concat([whole, full, words]).sort("key", "item", "kind")
        self._keys = SortedKeys(keys["key"])
        self._key_items = keys["item"].to_numpy().astype(np.int64)
        self._key_kinds = keys["kind"].to_numpy()
        self._key_lengths = keys["key"].str.len_chars().to_numpy()

    def __len__(self) -> int:
        return len(self.ids)

    # -- exact lookups ---------------------------------------------------------------------
    def exact(self, text: str) -> int | None:
        """The item whose id is ``text``, else the most listened-to one of that folded name."""
        index = self._id_index.get(text)
        if index is not None:
            return index
        same = self._named(without_article(_key(text)).replace(" ", ""))
        return same[0] if same else None

    def _named(self, compact: str) -> list[int]:
        """Items whose whole name (article optional, no spaces) is ``compact``, the most
        listened-to first: several items may share a name, and that one is the one meant."""
        lo, hi = self._keys.equal_range(compact)
        if lo == hi:
            return []
        whole = self._key_kinds[lo:hi] != _WORD
        items = np.unique(self._key_items[lo:hi][whole])
        return items[np.lexsort((items, -self.listeners[items]))].tolist()

    def _compact(self, i: int) -> str:
        return self._keys.get(int(self._core_key[i]))

    # -- search ----------------------------------------------------------------------------
    def search(self, text: str, limit: int) -> list[Hit]:
        """The best ``limit`` matches for ``text`` as typed so far (see the module's ranking).
        Empty text: the most listened-to items."""
        if limit < 1:
            return []
        text = text[:MAX_TEXT]
        folded = _key(text) if text.strip() else ""
        if not folded:
            return [Hit(int(i), 0.0, "popular") for i in self._popular[:limit]]
        core = without_article(folded)
        compact = core.replace(" ", "")
        full = folded.replace(" ", "")

        exact: list[Hit] = []
        index = self._id_index.get(text.strip())
        if index is not None:
            exact.append(Hit(index, 100.0, "id"))
        exact += [Hit(i, 100.0, "name") for i in self._named(compact) if i != index]
        prefix, word, started = self._prefix_hits(compact, full, limit, {h.index for h in exact})
        fuzzy: list[Hit] = []
        if len(compact) >= FUZZY_MIN_LENGTH:
            fuzzy = self._fuzzy_hits(core, limit, started, [h.index for h in exact])
        # Every tier holds its best ``limit``, so a shorter list is the start of a longer one.
        return self._promote_popular(exact + prefix + word + fuzzy)[:limit]

    def _prefix_hits(
        self, compact: str, full: str, limit: int, seen: set[int]
    ) -> tuple[list[Hit], list[Hit], np.ndarray]:
        """The ``limit`` most listened-to names starting with the text, the same for names
        with a later word starting with it, and every item either way matched."""
        items, tiers = [], []
        ranges = [(compact, {_CORE: 0, _FULL: 0, _WORD: 1})]
        if full != compact:
            # "the b..." typed: names with the article start with it; names without it (the
            # article added by mistake) and later words come next.
            ranges = [(full, {_CORE: 0, _FULL: 0, _WORD: 1}), (compact, {_CORE: 1, _WORD: 1})]
        for key, tier_of in ranges:
            lo, hi = self._keys.prefix_range(key)
            kinds = self._key_kinds[lo:hi]
            tier = np.full(len(kinds), -1, np.int64)
            for kind, t in tier_of.items():
                tier[kinds == kind] = t
            keep = tier >= 0
            items.append(self._key_items[lo:hi][keep])
            tiers.append(tier[keep])
        item = np.concatenate(items)
        tier = np.concatenate(tiers)
        out: tuple[list[Hit], list[Hit]] = ([], [])
        taken = set(seen)
        for t, hits in enumerate(out):
            mine = item[tier == t]
            # An item may match several ways (several words): enough are ranked to leave
            # ``limit`` distinct ones.
            take = min(len(mine), 4 * limit + len(taken))
            if take < len(mine):
                mine = mine[np.argpartition(-self.listeners[mine], take - 1)[:take]]
            mine = mine[np.lexsort((mine, -self.listeners[mine]))]
            for i in mine.tolist():
                if i in taken:
                    continue
                taken.add(i)
                score = 100.0 * len(compact) / max(len(self._compact(i)), 1)
                hits.append(Hit(i, round(min(score, 99.0), 1), "prefix" if t == 0 else "word"))
                if len(hits) == limit:
                    break
        return out[0], out[1], item

    def _promote_popular(self, hits: list[Hit]) -> list[Hit]:
        """Tier order, except that a near-exact hit (a name or a later word starting with the
        text, or a spelling within about one typo) goes ahead of hits it has ``DEMOTE_RATIO``
        times the listeners of, at most ``DEMOTE_PLACES`` such moves: the text may be
        unfinished, and "beat" means The Beatles (480 listeners) more likely than The Beat (1),
        "eminen" Eminem (204) more likely than Eminence Symphony Orchestra (1)."""
        out = list(hits)
        listeners = self.listeners[[h.index for h in out]].tolist() if out else []
        moved = 0
        for p in range(1, len(out)):
            if moved == DEMOTE_PLACES:
                break
            if out[p].how == "fuzzy" and out[p].score < NEAR_EXACT:
                continue
            if listeners[p] >= DEMOTE_RATIO * max(max(listeners[moved:p]), 1):
                out.insert(moved, out.pop(p))
                listeners.insert(moved, listeners.pop(p))
                moved += 1
        return out

    # -- close spellings -------------------------------------------------------------------
    def _build_trigrams(self, core: list[str]) -> None:
        """Postings of character trigrams (words marked at both ends): the fuzzy tier scores
        only the names sharing most trigrams with the text, not the whole catalogue."""
        # In blocks of names, so that the per-character arrays stay small (the process keeps
        # the peak of its heap): each block's (trigram, name) pairs, once each, in name order.
        pairs = [
            _trigram_pairs(core[start : start + TRIGRAM_BLOCK], start)
            for start in range(0, len(core), TRIGRAM_BLOCK)
        ]
        grams = np.concatenate([g for g, _ in pairs]) if pairs else np.empty(0, np.uint64)
        owner = np.concatenate([o for _, o in pairs]) if pairs else np.empty(0, np.int32)
        del pairs
        order = np.argsort(grams, kind="stable")  # names stay ascending within a trigram
        grams, owner = grams[order], owner[order]
        del order
        self._gram_codes, starts = np.unique(grams, return_index=True)
        self._gram_starts = np.append(starts, len(grams))
        self._gram_items = owner

    def _fuzzy_hits(
        self, core: str, limit: int, started: np.ndarray, exact: list[int]
    ) -> list[Hit]:
        """The ``limit`` closest spellings among names not already found by their start."""
        grams = _trigram_codes(_code_points(_trigram_text(core)))
        grams = np.unique(grams[_informative(grams)])
        if len(grams) == 0 or len(self._gram_codes) == 0:
            return []
        slot = np.minimum(np.searchsorted(self._gram_codes, grams), len(self._gram_codes) - 1)
        slot = slot[self._gram_codes[slot] == grams]
        if len(slot) == 0:
            return []
        postings = np.concatenate(
            [self._gram_items[self._gram_starts[s] : self._gram_starts[s + 1]] for s in slot]
        )
        shared = np.bincount(postings, minlength=len(self.ids))
        shared[started] = 0
        shared[exact] = 0
        candidates = np.flatnonzero(shared >= max(1, min(int(shared.max()), len(grams) // 3)))
        if len(candidates) > FUZZY_CANDIDATES:
            best = np.argpartition(-shared[candidates], FUZZY_CANDIDATES - 1)
            candidates = candidates[best[:FUZZY_CANDIDATES]]
        if len(candidates) == 0:
            return []
        compact = core.replace(" ", "")
        scores = self._spelling_scores(compact, candidates)
        keep = scores >= FUZZY_CUTOFF
        candidates, scores = candidates[keep], scores[keep]
        # Near-equal spellings: the more listened-to name first (a few points at most).
        bonus = POPULARITY_POINTS * np.log1p(self.listeners[candidates]) / self._max_log
        order = np.lexsort((candidates, -(scores + bonus)))[:limit]
        return [Hit(int(candidates[k]), round(float(scores[k]), 1), "fuzzy") for k in order]

    def _spelling_scores(self, text: str, candidates: np.ndarray) -> np.ndarray:
        """How close ``text`` is to each candidate's name (0..100): the whole name, or a little
        lower its start or a later word's start as far as typed (text typed so far)."""
        names = self._keys.gather(self._core_key[candidates])
        scores = cdist([text], names, scorer=fuzz.ratio)
        scores = scores[0].astype(np.float64)
        # Every key of every candidate (positions in the sorted list), and whose it is.
        first = self._item_key_ptr[candidates]
        counts = self._item_key_ptr[candidates + 1] - first
        owner = np.repeat(np.arange(len(candidates)), counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        position = self._item_keys[np.repeat(first, counts) + within]
        n = len(text)
        kinds = self._key_kinds[position]
        keep = (self._key_lengths[position] > n + 1) & (kinds != _FULL)
        position, owner, kinds = position[keep], owner[keep], kinds[keep]
        if len(position):
            # Up to the typed length, and one more (a letter left out).
            keys = self._keys.gather(position)
            cut = [key[:n] for key in keys] + [key[: n + 1] for key in keys]
            near = cdist([text], cut, scorer=fuzz.ratio)[0].reshape(2, -1).max(axis=0)
            np.maximum.at(scores, owner, near * _START_WEIGHT[kinds])
        return scores

    # -- resolving a whole name ------------------------------------------------------------
    def resolve(self, text: str, candidates: int = 5) -> Resolution:
        """The item ``text`` names: its id, its name (folded), an unambiguous close spelling
        or a unique prefix covering half the name; else None and the best candidates."""
        index = self.exact(text)
        if index is not None:
            how = "id" if self._id_index.get(text) == index else "name"
            return Resolution(index, how)
        hits = self.search(text, max(candidates, 2))
        if hits:
            top = hits[0]
            if top.how == "fuzzy" and top.score >= RESOLVE_FUZZY:
                runner = hits[1] if len(hits) > 1 else None
                # Unambiguous: no other close spelling, or none nearly as close, or the others
                # are obscure copies ("Britney Spears vs Avril Lavigne").
                if runner is None or (
                    top.score - runner.score >= RESOLVE_MARGIN
                    or self.listeners[top.index]
                    >= DEMOTE_RATIO * max(int(self.listeners[runner.index]), 1)
                ):
                    return Resolution(top.index, "fuzzy")
            starts = [h for h in hits if h.how in ("prefix", "word")]
            if top.how == "prefix" and len(starts) == 1 and top.score >= 50.0:
                return Resolution(top.index, "prefix")
        return Resolution(None, None, [h.index for h in hits[:candidates]])


class SortedKeys:
    """Sorted strings as one UTF-8 buffer and offsets: a 200,000-name catalogue's 620,000
    prefix keys in about a third of the memory of a list of str, and no small objects
    left scattered in the heap. UTF-8 byte order is code point order, so ``bisect`` on the
    encoded keys agrees with ``sorted`` on the strings."""

    def __init__(self, keys: pl.Series) -> None:
        self._data = (keys.str.join("").item() or "").encode()
        ends = keys.str.len_bytes().cast(pl.Int64).cum_sum().to_numpy()
        self._offsets = np.concatenate([[0], ends]).astype(np.int64)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> bytes:  # what bisect compares: the encoded key
        return self._data[self._offsets[i] : self._offsets[i + 1]]

    def get(self, i: int) -> str:
        return self[i].decode()

    def gather(self, positions: np.ndarray) -> list[str]:
        data, starts, ends = self._data, self._offsets[positions], self._offsets[positions + 1]
        return [data[a:b].decode() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]

    def equal_range(self, key: str) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the keys equal to ``key``."""
        encoded = key.encode()
        lo = bisect.bisect_left(self, encoded)
        return lo, bisect.bisect_right(self, encoded, lo)

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the keys starting with ``prefix``."""
        encoded = prefix.encode()
        lo = bisect.bisect_left(self, encoded)
        return lo, bisect.bisect_left(self, encoded + _MAX_UTF8, lo)

    def to_list(self) -> list[str]:
        return self.gather(np.arange(len(self)))


def _trigram_pairs(core: list[str], first: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (trigram code, item) pairs of names ``first``, ``first + 1``, ..."""
    # All the names' trigram texts as one string (see ``_trigram_text``): three markers each.
    joined = "\x02\x02" + "\x03\x02\x02".join(core).replace(" ", "\x02") + "\x03"
    lengths = np.fromiter(map(len, core), np.int64, len(core)) + 3
    owner = np.repeat(np.arange(first, first + len(core), dtype=np.int32), lengths)
    grams = _trigram_codes(_code_points(joined))
    # A trigram counts when its three characters belong to one name, and once per name.
    valid = (owner[: len(grams)] == owner[2:]) & _informative(grams)
    grams, owner = grams[valid], owner[: len(grams)][valid]
    order = np.lexsort((grams, owner))
    grams, owner = grams[order], owner[order]
    keep = np.ones(len(grams), bool)
    keep[1:] = (grams[1:] != grams[:-1]) | (owner[1:] != owner[:-1])
    return grams[keep], owner[keep]


def _trigram_text(core: str) -> str:
    # "\x02" before each word and "\x03" at the end: starts and whole names weigh in the
    # overlap. Neither survives ``fold``, so they never collide with a name's own characters.
    return "\x02\x02" + core.replace(" ", "\x02") + "\x03"


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _trigram_codes(codes: np.ndarray) -> np.ndarray:
    # Code points are below 2**21: three fit one uint64.
    if len(codes) < 3:
        return np.empty(0, np.uint64)
    return (codes[:-2] << np.uint64(42)) | (codes[1:-1] << np.uint64(21)) | codes[2:]


def _informative(grams: np.ndarray) -> np.ndarray:
    # "two markers + a letter" only says which letter a word starts with: it would list a
    # tenth of the catalogue for every query and tell the candidates apart by nothing.
    return (grams >> np.uint64(21)) != np.uint64((0x02 << 21) | 0x02)
