"""diskcache storage that keeps raw bytes and refuses everything else.

diskcache's default `Disk` pickles any value that is not bytes, str, int or float, and
unpickles whatever a pickle-mode row holds when it is read (CVE-2025-69872: anyone who can
write to the cache directory could run code in the app). `BytesOnlyDisk` subclasses
`diskcache.Disk` only to narrow it: it stores `bytes` values under `str` keys and, on read,
returns raw bytes only. A row in pickle or text mode, a pickled key, or a value file outside
diskcache's own layout raises `RefusedValue`; nothing is ever unpickled.
"""

from __future__ import annotations

import re

from diskcache import Disk
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

#: diskcache names value files "xx/yy/<28 hex>.val" under the cache directory.
_VALUE_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")


class RefusedValue(ValueError):
    """A stored key or value that is not plain bytes/str: refused rather than decoded."""


class BytesOnlyDisk(Disk):
    """A diskcache `Disk` for str keys and bytes values that refuses pickles both ways."""

    def put(self, key: object) -> tuple[str, bool]:
        if type(key) is not str:
            raise TypeError(f"cache keys must be str, not {type(key).__name__}")
        return key, True

    def get(self, key: object, raw: bool) -> str:
        if not raw or type(key) is not str:
            raise RefusedValue("refusing a stored key that is not a plain string")
        return key

    def store(self, value: object, read: bool, key: object = UNKNOWN) -> tuple:
        if read or type(value) is not bytes:
            raise TypeError(f"cache values must be bytes, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: object, read: bool) -> bytes:
        if not read and mode == MODE_RAW and type(value) is bytes:
            return value
        if not read and mode == MODE_BINARY and filename and _VALUE_FILE.fullmatch(filename):
            return super().fetch(mode, filename, None, False)
        raise RefusedValue(f"refusing a stored value in mode {mode}: only raw bytes are read")
