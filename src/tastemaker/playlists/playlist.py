"""What a playlist is: tracks with their reasons, and what it fell short by.

A ``Track`` is a recording (or, for data that names artists only, an artist standing in for
one) with the model item it came from, its score and a reason a listener can read. The keys
the constraints compare are here, so every builder and the checker agree on what "the same
artist" and "the same song" mean: names case-folded, accents and punctuation kept, spaces
collapsed (``normalised``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

_SPACES = re.compile(r"\s+")
MUSICBRAINZ_RECORDING = "https://musicbrainz.org/recording/"


@functools.lru_cache(maxsize=1 << 16)  # names and titles repeat across requests: a dict hit
def normalised(name: str | None) -> str:
    """Case-folded, trimmed, single-spaced: 'The  Beatles ' and 'the beatles' are one key."""
    return _SPACES.sub(" ", (name or "").casefold()).strip()


@dataclass(frozen=True)
class Track:
    """One entry of a playlist."""

    item: int  # the model's item index (an artist, a release or the recording itself)
    artist: str  # the artist the rules count (at artist level, the model's item)
    title: str | None  # None where the data names no recordings (an artist entry)
    release: str | None = None
    recording_mbid: str | None = None
    recording: str | None = None  # the recording key of the track tables
    reason: str = ""
    score: float = 0.0
    discovery: bool = False  # an artist the listener has never played
    credit: str | None = None  # the credit as released ("X feat. Y"), where it differs
    plays: int = 0  # plays behind it: everyone's (the listener's own for a favourite)

    @property
    def creator(self) -> str:
        return self.credit or self.artist

    @cached_property  # the rules compare it many times per playlist
    def artist_key(self) -> str:
        return normalised(self.artist)

    @cached_property
    def song_key(self) -> tuple[str, str]:
        """The same song on two releases has one key: normalised artist + title."""
        return self.artist_key, normalised(self.title) if self.title else f"#{self.item}"

    @property
    def identifier(self) -> str | None:
        return MUSICBRAINZ_RECORDING + self.recording_mbid if self.recording_mbid else None


@dataclass
class Playlist:
    """An ordered tracklist for a listener (or a radio prompt), and how it was made."""

    title: str
    creator: str
    date: datetime
    mode: str
    tracks: list[Track]
    requested: int
    max_per_artist: int
    artists_only: bool = False  # the data names no recordings: an artist list
    shortfall: str | None = None  # why fewer than ``requested`` tracks could be found
    notes: list[str] = field(default_factory=list)

    @property
    def short_by(self) -> int:
        return max(self.requested - len(self.tracks), 0)

    def describe_shortfall(self) -> str | None:
        """'12 tracks short of 50: ...' when the playlist could not be filled."""
        if not self.short_by:
            return None
        why = self.shortfall or "not enough candidates"
        return f"{self.short_by} tracks short of {self.requested}: {why}"
