"""One stored blob = a small JSON header + the caller's bytes; JSON, never pickle.

The header carries the caller's metadata and the size of the image the entry was made
from, so an exact hit needs a single read.
"""

from __future__ import annotations

import json
import struct

MAGIC = b"CSv1"
_LENGTH = struct.Struct(">I")


class EnvelopeError(ValueError):
    """A stored blob that this code did not write (or that was damaged)."""


def pack(value: bytes, meta: dict, source_size: tuple[int, int]) -> bytes:
    try:
        header = json.dumps({"meta": meta, "source_size": list(source_size)}, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise TypeError(f"cache metadata must be JSON-serializable: {error}") from None
    return MAGIC + _LENGTH.pack(len(header)) + header + value


def unpack(blob: bytes) -> tuple[bytes, dict, tuple[int, int]]:
    """Return (value, meta, source_size); raise EnvelopeError for anything malformed."""
    start = len(MAGIC) + _LENGTH.size
    if len(blob) < start or not blob.startswith(MAGIC):
        raise EnvelopeError("not a cache_store blob")
    (length,) = _LENGTH.unpack_from(blob, len(MAGIC))
    try:
        header = json.loads(blob[start : start + length])
        meta, (width, height) = header["meta"], header["source_size"]
    except (ValueError, KeyError, TypeError) as error:
        raise EnvelopeError(f"damaged cache_store header: {error}") from None
    if not isinstance(meta, dict) or not (isinstance(width, int) and isinstance(height, int)):
        raise EnvelopeError("damaged cache_store header")
    return blob[start + length :], meta, (width, height)
