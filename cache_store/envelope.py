"""One stored blob = a small JSON header + the caller's bytes, under a checksum; never pickle.

The header carries the caller's metadata and the size of the image the entry was made
from, so an exact hit needs a single read. A CRC-32 over header and value catches what a
power loss or a bad disk leaves behind (a truncated value file, flipped bits): such a blob
fails `unpack` and the cache treats it as a miss, so a damaged picture is never served.
CRC-32 is an error check, not a seal: whoever can write the store can write a valid blob.
It was chosen by measuring (bench/bench_store.py): on a ~300 KB PNG it costs about a tenth
of a millisecond, half of SHA-256 and a quarter of BLAKE2b on the project's machine.

Layout: ``CSv2`` | CRC-32 of everything after it (4 bytes) | header length (4) | header | value.
Blobs of the first format (``CSv1``, no checksum) are refused like any other foreign blob,
so they are recomputed once and stored again with a checksum.
"""

from __future__ import annotations

import json
import struct
import zlib

from .lookup import Meta

MAGIC = b"CSv2"
_FIELDS = struct.Struct(">II")  # checksum, header length
_START = len(MAGIC) + _FIELDS.size


class EnvelopeError(ValueError):
    """A stored blob that this code did not write, or that was damaged."""


def pack(value: bytes, meta: Meta, source_size: tuple[int, int]) -> bytes:
    try:
        header = json.dumps({"meta": meta, "source_size": list(source_size)}, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise TypeError(f"cache metadata must be JSON-serializable: {error}") from None
    length = struct.pack(">I", len(header))
    checksum = zlib.crc32(value, zlib.crc32(header, zlib.crc32(length)))
    return MAGIC + _FIELDS.pack(checksum, len(header)) + header + value


def unpack(blob: bytes) -> tuple[bytes, Meta, tuple[int, int]]:
    """Return (value, meta, source_size); raise EnvelopeError for anything malformed or damaged."""
    if len(blob) < _START or not blob.startswith(MAGIC):
        raise EnvelopeError("not a cache_store blob of this version")
    checksum, length = _FIELDS.unpack_from(blob, len(MAGIC))
    view = memoryview(blob)
    if zlib.crc32(view[_START - 4 :]) != checksum:
        raise EnvelopeError(f"damaged cache_store blob ({len(blob)} bytes): checksum mismatch")
    try:
        header = json.loads(view[_START : _START + length].tobytes())
        meta, (width, height) = header["meta"], header["source_size"]
    except (ValueError, KeyError, TypeError) as error:
        raise EnvelopeError(f"damaged cache_store header: {error}") from None
    if not isinstance(meta, dict) or not (isinstance(width, int) and isinstance(height, int)):
        raise EnvelopeError("damaged cache_store header")
    return blob[_START + length :], meta, (width, height)
