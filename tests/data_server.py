"""A loopback HTTP server for the data set downloads (tests/data/test_datasets.py, test_readme.py),
and small files in the public data sets' formats to serve from it.

The server honours ``Range: bytes=N-`` (206 + Content-Range) unless told not to, can fail a
path with a status, and can cut the body of a path's next response short (a truncated
download). It serves only what the test put in ``files``, on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from tastemaker.data import datasets


@dataclass
class Served:
    files: dict[str, bytes] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)  # path -> HTTP status
    cut: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing, once
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class DataServer:
    """``with DataServer() as server: server.url("/x.zip")``."""

    def __init__(self) -> None:
        self.served = Served()
        served = self.served

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path, wanted = self.path.split("?")[0], self.headers.get("Range")
                served.requests.append((path, wanted))
                if path in served.fail:
                    self.send_error(served.fail[path])
                    return
                if path not in served.files:
                    self.send_error(404)
                    return
                body = served.files[path]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
                if match and served.honour_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                rest = body[start:]
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                if path in served.cut:
                    self.wfile.write(rest[: served.cut.pop(path)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(rest)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> DataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hetrec_zip(
    users: int = 120,
    artists: int = 150,
    per_user: int = 15,
    seed: int = 0,
    names: tuple[str, ...] = ("Radiohead", "The Beatles", "Björk"),
) -> bytes:
    """A zip in the HetRec 2011 layout (files at the top, tab-separated, one header line):
    ``users`` users with ``per_user`` artists each, popular artists more often (Zipf); the
    most popular artists are called ``names``, the others "Artist N"."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, artists + 1)
    rows = ["userID\tartistID\tweight"]
    for user in range(2, users + 2):
        chosen = rng.choice(artists, size=per_user, replace=False, p=weights / weights.sum())
        rows += [f"{user}\t{a + 1}\t{int(rng.integers(1, 500))}" for a in chosen]
    called = [names[a] if a < len(names) else f"Artist {a + 1}" for a in range(artists)]
    lines = ["id\tname\turl\tpictureURL"] + [
        f"{a + 1}\t{called[a]}\thttp://www.last.fm/music/a{a + 1}\t" for a in range(artists)
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("user_artists.dat", "\r\n".join(rows) + "\r\n")
        zf.writestr("artists.dat", "\n".join(lines) + "\n")
    return buffer.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def serve_as(monkeypatch, server: DataServer, name: str, path: str, data: bytes, checksum):
    """Serve ``data`` at ``path`` and point data set ``name`` at it with ``checksum``
    (``sha256(data)``, another pinned value, or None for first use)."""
    server.served.files[path] = data
    ds = datasets.DATASETS[name]
    download = dataclasses.replace(ds.downloads[0], url=server.url(path), checksum=checksum)
    monkeypatch.setitem(datasets.DATASETS, name, datasets.with_url(ds, download))
