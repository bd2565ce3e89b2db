"""Playlists: a ranking under constraints, in an order one can press play on.

``Library`` (a model and its catalogue's tracks), ``personal_playlist`` (jams, exploration,
mix), ``radio`` (weighted prompts), the rules (``violations``) and the file formats
(``render``). See docs/playlists.md.
"""

from tastemaker.playlists.constraints import Rules, violations
from tastemaker.playlists.export import FORMATS, MEDIA_TYPES, render
from tastemaker.playlists.library import Library, Listener
from tastemaker.playlists.personal import MODES, personal_playlist
from tastemaker.playlists.playlist import Playlist, Track
from tastemaker.playlists.radio import BANDS, radio

__all__ = [
    "BANDS",
    "FORMATS",
    "MEDIA_TYPES",
    "MODES",
    "Library",
    "Listener",
    "Playlist",
    "Rules",
    "Track",
    "personal_playlist",
    "radio",
    "render",
    "violations",
]
