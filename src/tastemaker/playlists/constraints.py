"""The rules every playlist keeps, as a function that checks any playlist, whoever built it.

- length: exactly the requested number of tracks, or fewer with the shortfall explained;
- no recording twice, nor the same song twice (normalised artist + title, so a song on an
  album and on a compilation counts once);
- at most K tracks per artist (``PERSONAL_MAX_PER_ARTIST``, ``RADIO_MAX_PER_ARTIST``);
- never the same artist twice in a row;
- the mode's freshness rule (``Freshness``): jams play nothing heard in the last 60 days,
  exploration only artists never played, mix both kinds and nothing heard recently.

``violations`` lists what a playlist breaks (empty: it keeps every rule); ``Selection`` is the
incremental form the builders fill playlists with, so they cannot build what the checker
refuses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tastemaker.playlists.playlist import Playlist, Track

PERSONAL_MAX_PER_ARTIST = 2
RADIO_MAX_PER_ARTIST = 3
RECENT_DAYS = 60
FRESHNESS_RULES = ("none", "not-recent", "new-artists")


@dataclass(frozen=True)
class Freshness:
    """A freshness rule and what the listener has heard, as of the playlist's date.

    ``recent`` holds the recording keys heard in the last ``RECENT_DAYS`` days; ``known``
    the normalised names of every artist the listener has played.
    """

    rule: str = "none"
    recent: frozenset[str] = frozenset()
    known: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.rule not in FRESHNESS_RULES:
            raise ValueError(f"freshness rule must be one of {FRESHNESS_RULES}, not {self.rule!r}")

    def allows(self, track: Track) -> bool:
        if self.rule == "new-artists":
            return track.artist_key not in self.known
        if self.rule == "not-recent":
            return track.recording is None or track.recording not in self.recent
        return True

    def describe(self) -> str:
        return {
            "none": "no freshness rule",
            "not-recent": f"nothing heard in the last {RECENT_DAYS} days",
            "new-artists": "only artists never played",
        }[self.rule]


@dataclass(frozen=True)
class Rules:
    length: int
    max_per_artist: int = PERSONAL_MAX_PER_ARTIST
    freshness: Freshness = field(default_factory=Freshness)


def recording_key(track: Track) -> str:
    """What tells recordings apart: the recording key, else the item (an artist entry)."""
    return track.recording if track.recording is not None else f"item:{track.item}"


def describe_shortfall(pool: str, refused: Counter[str]) -> str:
    """'<pool> ran out (12 by per-artist limit, ...)': why a selection is short."""
    reasons = ", ".join(f"{n} by {why}" for why, n in refused.most_common())
    return f"{pool} ran out" + (f" ({reasons})" if reasons else "")


def violations(playlist: Playlist, rules: Rules) -> list[str]:
    """Every rule the playlist breaks, one line each (empty when it keeps them all)."""
    found: list[str] = []
    tracks = playlist.tracks
    if len(tracks) > rules.length:
        found.append(f"length: {len(tracks)} tracks, asked for {rules.length}")
    if len(tracks) < rules.length and not playlist.shortfall:
        found.append(f"length: {len(tracks)} of {rules.length} tracks and no reason given")
    for what, keys in (
        ("recording", [recording_key(t) for t in tracks]),
        ("song", [t.song_key for t in tracks]),
    ):
        repeated = [k for k, c in Counter(keys).items() if c > 1]
        if repeated:
            found.append(f"duplicate {what}: {repeated[0]!r} ({len(repeated)} in all)")
    per_artist = Counter(t.artist_key for t in tracks)
    over = {a: c for a, c in per_artist.items() if c > rules.max_per_artist}
    if over:
        artist, count = next(iter(over.items()))
        found.append(f"per artist: {count} tracks of {artist!r} (at most {rules.max_per_artist})")
    for position, (a, b) in enumerate(zip(tracks, tracks[1:], strict=False), start=1):
        if a.artist_key == b.artist_key:
            found.append(f"back to back: {a.artist!r} at positions {position} and {position + 1}")
            break
    stale = [t for t in tracks if not rules.freshness.allows(t)]
    if stale:
        found.append(
            f"freshness ({rules.freshness.describe()}): {stale[0].artist} – {stale[0].title} "
            f"({len(stale)} in all)"
        )
    return found


class Selection:
    """Tracks chosen so far under ``rules`` (order comes later): ``offer`` adds a track when
    it keeps every rule but the order, and says whether it did."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.tracks: list[Track] = []
        self._recordings: set[str] = set()
        self._songs: set[tuple[str, str]] = set()
        self._per_artist: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    @property
    def full(self) -> bool:
        return len(self.tracks) >= self.rules.length

    def artist_count(self, track: Track) -> int:
        return self._per_artist[track.artist_key]

    def offer(self, track: Track) -> bool:
        if self.full:
            return False
        reason = None
        if recording_key(track) in self._recordings or track.song_key in self._songs:
            reason = "duplicate"
        elif self._per_artist[track.artist_key] >= self.rules.max_per_artist:
            reason = "per-artist limit"
        elif not self.rules.freshness.allows(track):
            reason = "freshness"
        if reason is not None:
            self.refused[reason] += 1
            return False
        self.tracks.append(track)
        self._recordings.add(recording_key(track))
        self._songs.add(track.song_key)
        self._per_artist[track.artist_key] += 1
        return True

    def shortfall(self, pool: str) -> str | None:
        """Why the selection is short (None when full): what ran out, and what was refused."""
        if self.full:
            return None
        return describe_shortfall(pool, self.refused)
