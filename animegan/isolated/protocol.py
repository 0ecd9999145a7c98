"""The messages between the server and a decoding worker: JSON headers and raw byte payloads.

A worker handles untrusted files, so whatever it sends back is treated as untrusted too:
never a pickle (unpickling runs code), only a JSON header of bounded size followed by the
number of raw payloads it announces, each of bounded size. Requests to the worker are
built the same way, so one reader serves both sides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

#: A header larger than this is a protocol violation.
MAX_HEADER_BYTES = 64 << 10
#: At most this many payloads follow one header.
MAX_PAYLOADS = 8


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


@dataclass
class Message:
    """A header (JSON object) and the raw payloads that came with it."""

    header: dict[str, Any]
    payloads: list[bytes] = field(default_factory=list)


def send(conn: Connection, header: dict[str, Any], payloads: Sequence[bytes | memoryview] = ()) -> None:
    data = json.dumps({**header, "payloads": len(payloads)}, separators=(",", ":")).encode()
    if len(data) > MAX_HEADER_BYTES or len(payloads) > MAX_PAYLOADS:
        raise ProtocolError("message too large to send")
    conn.send_bytes(data)
    for payload in payloads:
        conn.send_bytes(payload)


def receive(conn: Connection, max_payload_bytes: int) -> Message:
    """Read one message; raises `ProtocolError` for anything malformed or over the limits,
    and EOFError / OSError when the other side is gone."""
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
    payloads = []
    for _ in range(count):
        try:
            payloads.append(conn.recv_bytes(max_payload_bytes))
        except OSError as exc:
            if "bad message length" in str(exc):
                raise ProtocolError("payload over the size limit") from exc
            raise
    return Message(header, payloads)
