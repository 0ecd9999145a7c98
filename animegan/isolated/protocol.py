"""The messages between the server and a decoding worker: JSON headers and raw byte payloads.

A worker handles untrusted files, so whatever it sends back is treated as untrusted too:
never a pickle (unpickling runs code), only a JSON header of bounded size followed by the
number of raw payloads it announces, each of bounded size. Requests to the worker are
built the same way, so one reader serves both sides.

A job's one reply may carry its payloads in a `SharedRegion` instead of down the socket:
the server copies them out of the region (bounds checked against the header) before the
worker can be given another job, so a worker never writes while the server reads.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

#: A header larger than this is a protocol violation.
MAX_HEADER_BYTES = 64 << 10
#: At most this many payloads follow one header.
MAX_PAYLOADS = 8
#: Set in a worker's environment to "1" when it runs clip jobs as well as photo jobs.
CLIP_JOBS_ENV = "ANIMEGAN_WORKER_CLIPS"
#: Size of a worker's shared reply region: a photo job's reply (768 px RGBA and a smaller
#: copy) fits; a larger reply goes down the socket as before.
SHARED_BYTES = 8 << 20


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


@dataclass
class Message:
    """A header (JSON object) and the raw payloads that came with it."""

    header: dict[str, Any]
    payloads: list[bytes] = field(default_factory=list)


class SharedRegion:
    """Memory both sides map (a memfd the server creates and its worker inherits), for a
    reply's pixels: a preview's 500 KB crossed the socket in about 1 ms here, a copy through
    shared memory takes a tenth of that. Pages are touched only as far as replies reach."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self._map = mmap.mmap(fd, size)

    @classmethod
    def create(cls, name: str, size: int = SHARED_BYTES) -> tuple[SharedRegion, int] | None:
        """A new region and its file descriptor (for the worker to inherit; the caller
        closes it once passed), or None where the system has no memfd."""
        if not hasattr(os, "memfd_create"):
            return None
        fd = os.memfd_create(name, 0)
        try:
            os.ftruncate(fd, size)
            return cls(fd, size), fd
        except OSError:
            os.close(fd)
            return None

    def write(self, payloads: Sequence[bytes | memoryview]) -> list[list[int]] | None:
        """Put `payloads` one after another from the start; their (offset, length) spans, or
        None when they do not fit (they then go down the socket)."""
        views = [memoryview(payload).cast("B") for payload in payloads]
        if sum(len(view) for view in views) > self.size:
            return None
        spans, offset = [], 0
        for view in views:
            self._map[offset : offset + len(view)] = view
            spans.append([offset, len(view)])
            offset += len(view)
        return spans

    def read(self, spans: object, max_payload_bytes: int) -> list[bytes]:
        """Copies of the payloads at `spans` (from an untrusted header: checked first)."""
        if not isinstance(spans, list) or len(spans) > MAX_PAYLOADS:
            raise ProtocolError("bad shared payload list")
        payloads = []
        for span in spans:
            if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)):
                raise ProtocolError(f"bad shared payload span {span!r}")
            offset, length = span
            if not (offset >= 0 and 0 <= length <= max_payload_bytes and offset + length <= self.size):
                raise ProtocolError(f"shared payload span {span!r} out of bounds")
            payloads.append(self._map[offset : offset + length])
        return payloads

    def close(self) -> None:
        self._map.close()


def send(
    conn: Connection,
    header: dict[str, Any],
    payloads: Sequence[bytes | memoryview] = (),
    shared: SharedRegion | None = None,
) -> None:
    """Send one message; with `shared`, the payloads go into that region when they fit."""
    if shared is not None and payloads:
        spans = shared.write(payloads)
        if spans is not None:
            header, payloads = {**header, "shared": spans}, ()
    data = json.dumps({**header, "payloads": len(payloads)}, separators=(",", ":")).encode()
    if len(data) > MAX_HEADER_BYTES or len(payloads) > MAX_PAYLOADS:
        raise ProtocolError("message too large to send")
    conn.send_bytes(data)
    for payload in payloads:
        conn.send_bytes(payload)


def receive(conn: Connection, max_payload_bytes: int, shared: SharedRegion | None = None) -> Message:
    """Read one message (its payloads copied out of `shared` if the header says they are
    there); raises `ProtocolError` for anything malformed or over the limits, and EOFError /
    OSError when the other side is gone."""
    try:
        header = json.loads(conn.recv_bytes(MAX_HEADER_BYTES))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"unreadable header: {exc}") from exc
    except OSError as exc:
        if "bad message length" in str(exc):
            raise ProtocolError("header over the size limit") from exc
        raise
    if not isinstance(header, dict):
        raise ProtocolError("the header is not a JSON object")
    count = header.pop("payloads", 0)
    if type(count) is not int or not 0 <= count <= MAX_PAYLOADS:
        raise ProtocolError(f"bad payload count {count!r}")
    if "shared" in header:
        spans = header.pop("shared")
        if shared is None or count:
            raise ProtocolError("shared payloads where none may be")
        return Message(header, shared.read(spans, max_payload_bytes))
    payloads = []
    for _ in range(count):
        try:
            payloads.append(conn.recv_bytes(max_payload_bytes))
        except OSError as exc:
            if "bad message length" in str(exc):
                raise ProtocolError("payload over the size limit") from exc
            raise
    return Message(header, payloads)
