"""Playlists as files: JSPF (ListenBrainz imports it), XSPF and M3U8.

JSPF follows the XSPF data model in JSON with ListenBrainz's extension blocks: the playlist's
``title``, ``creator``, ``date``, an ``annotation``, and per track ``title``, ``creator``,
``album``, ``identifier`` (MusicBrainz recording URLs where the MBID is known) and an
``extension`` carrying the track's reason. XSPF is the same in XML (standard library
ElementTree, which escapes names); M3U8 is an extended M3U playlist in UTF-8 whose entries
are the recording URLs (or a search key where no MBID is known), with ``#EXTINF`` titles.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from tastemaker.playlists.playlist import Playlist, Track

FORMATS = ("jspf", "xspf", "m3u8")
MEDIA_TYPES = {
    "jspf": "application/jspf+json",
    "xspf": "application/xspf+xml",
    "m3u8": "audio/x-mpegurl",
}
JSPF_PLAYLIST_EXTENSION = "https://musicbrainz.org/doc/jspf#playlist"
JSPF_TRACK_EXTENSION = "https://musicbrainz.org/doc/jspf#track"
XSPF_NAMESPACE = "http://xspf.org/ns/0/"


def _annotation(playlist: Playlist) -> str:
    parts = [f"{playlist.mode} playlist by tastemaker"]
    parts += playlist.notes
    short = playlist.describe_shortfall()
    if short:
        parts.append(short)
    return "; ".join(parts)


def _title(track: Track) -> str:
    return track.title if track.title is not None else track.artist


def to_jspf(playlist: Playlist) -> dict[str, Any]:
    """The playlist as a JSPF document (a dict ready for ``json.dumps``)."""
    tracks = []
    for track in playlist.tracks:
        entry: dict[str, Any] = {"title": _title(track), "creator": track.creator}
        if track.release:
            entry["album"] = track.release
        if track.identifier:
            entry["identifier"] = [track.identifier]
        entry["extension"] = {
            JSPF_TRACK_EXTENSION: {"additional_metadata": {"reason": track.reason}}
        }
        tracks.append(entry)
    return {
        "playlist": {
            "title": playlist.title,
            "creator": playlist.creator,
            "date": playlist.date.isoformat(),
            "annotation": _annotation(playlist),
            "extension": {
                JSPF_PLAYLIST_EXTENSION: {
                    "public": False,
                    "additional_metadata": {
                        "algorithm_metadata": {"source_patch": f"tastemaker-{playlist.mode}"},
                        "requested": playlist.requested,
                        "short_by": playlist.short_by,
                    },
                }
            },
            "track": tracks,
        }
    }


def to_xspf(playlist: Playlist) -> str:
    """The playlist as an XSPF (XML) document."""
    root = ET.Element("playlist", version="1", xmlns=XSPF_NAMESPACE)
    for tag, text in (
        ("title", playlist.title),
        ("creator", playlist.creator),
        ("annotation", _annotation(playlist)),
        ("date", playlist.date.isoformat()),
    ):
        ET.SubElement(root, tag).text = text
    track_list = ET.SubElement(root, "trackList")
    for track in playlist.tracks:
        element = ET.SubElement(track_list, "track")
        if track.identifier:
            ET.SubElement(element, "identifier").text = track.identifier
        ET.SubElement(element, "title").text = _title(track)
        ET.SubElement(element, "creator").text = track.creator
        if track.release:
            ET.SubElement(element, "album").text = track.release
        ET.SubElement(element, "annotation").text = track.reason
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _m3u_line(text: str) -> str:
    """One line: no line breaks can enter the file from a name."""
    return " ".join(text.split())


def to_m3u8(playlist: Playlist) -> str:
    """The playlist as extended M3U (UTF-8): recording URLs, or a search key without MBID."""
    lines = ["#EXTM3U", f"#PLAYLIST:{_m3u_line(playlist.title)}"]
    for track in playlist.tracks:
        name = f"{_m3u_line(track.creator)} - {_m3u_line(_title(track))}"
        lines.append(f"#EXTINF:-1,{name}")
        lines.append(track.identifier or name)
    return "\n".join(lines) + "\n"


def render(playlist: Playlist, format: str) -> str:
    """The playlist as text in ``format`` (jspf, xspf or m3u8)."""
    if format == "jspf":
        return json.dumps(to_jspf(playlist), ensure_ascii=False, indent=2) + "\n"
    if format == "xspf":
        return to_xspf(playlist)
    if format == "m3u8":
        return to_m3u8(playlist)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
