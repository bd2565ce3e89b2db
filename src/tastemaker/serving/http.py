"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol with a header-size limit.

httptools (llhttp) has no limit on the size of a request's headers, and builds a header value
by concatenating what arrives: an 80 MB header took 12 s of the event loop, and every other
request of the worker waited for it. Here the bytes of a request's head are counted as they
arrive (and a head read at once is measured when complete); past
``h11_max_incomplete_event_size`` (uvicorn's own name for this limit, which its
h11 protocol applies too) the request is answered 431 with a JSON body and the connection is
closed: what the client still sends is discarded unparsed, for a short while, so that it can
read the answer instead of a connection reset.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024
# After refusing, incoming bytes are dropped for at most this long, then the socket closes.
LINGER_SECONDS = 2.0


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that answers 431 to request heads over the configured size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = self.config.h11_max_incomplete_event_size or MAX_HEADER_BYTES
        self._head_bytes = 0
        self._in_head = True  # between requests, the next bytes are a request head
        self._refused = False
        self._head_started = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # discarding what the client still sends after the 431
        counting = self._in_head
        self._head_started = False
        super().data_received(data)
        if self.transport.is_closing() or self._refused:
            return
        # Count chunks that are all head: a head that begins inside a chunk (after a body)
        # is counted from the next chunk on, so a body is never taken for a head.
        if counting and self._in_head and not self._head_started:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        # A head that arrived in one read (never counted above) is measured whole here.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self._refuse()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True
        self._head_started = True
        self._head_bytes = 0

    def _refuse(self) -> None:
        self._refused = True
        self.logger.warning("request head over %d bytes refused (431)", self.max_header_bytes)
        body = json.dumps(
            {"detail": f"request headers larger than {self.max_header_bytes} bytes"}
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
