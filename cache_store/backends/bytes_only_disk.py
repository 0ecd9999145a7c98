"""diskcache storage that keeps raw bytes, refuses everything else, and stays in its folder.

diskcache's default `Disk` pickles any value that is not bytes, str, int or float, and
unpickles whatever a pickle-mode row holds when it is read (CVE-2025-69872: anyone who can
write to the cache directory could run code in the app). `BytesOnlyDisk` subclasses
`diskcache.Disk` only to narrow it: it stores `bytes` values under `str` keys and, on read,
returns raw bytes only. A row in pickle or text mode, a pickled key, or a value file outside
diskcache's own layout raises `RefusedValue`; nothing is ever unpickled.

The same threat model covers paths: a row is only a pointer to a file, so a planted
filename (``../…``, absolute, or through a symlinked folder) must never make the cache read,
write or delete anything outside its directory. Only names of diskcache's own layout whose
real path lies inside the directory are read or deleted, and deleting prunes at most the
two value folders, never the directory or anything above it.

Sizes: the size recorded for a value file is what it takes on disk (whole blocks, plus its
two folders), so the store's byte budget counts what `du` would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterable

from diskcache import Disk
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

log = logging.getLogger(__name__)

#: diskcache names value files "xx/yy/<28 hex>.val" under the cache directory.
_VALUE_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")
#: Used when the file system does not say its block size.
DEFAULT_BLOCK = 4096


class RefusedValue(ValueError):
    """A stored key, value or path that is not plain bytes/str in the cache: refused."""


class BytesOnlyDisk(Disk):  # type: ignore[misc]  # diskcache ships no type hints
    """A diskcache `Disk` for str keys and bytes values that refuses pickles both ways."""

    def __init__(self, directory: str, **kwargs: object) -> None:
        super().__init__(directory, **kwargs)
        self._root = os.path.realpath(directory)
        self._written = threading.local()  # the value file this thread's last `store` wrote
        try:
            self.block = os.statvfs(directory).f_frsize or DEFAULT_BLOCK
        except (AttributeError, OSError):  # no statvfs (Windows)
            self.block = DEFAULT_BLOCK

    def put(self, key: object) -> tuple[str, bool]:
        if type(key) is not str:
            raise TypeError(f"cache keys must be str, not {type(key).__name__}")
        return key, True

    def get(self, key: object, raw: bool) -> str:
        if not raw or type(key) is not str:
            raise RefusedValue("refusing a stored key that is not a plain string")
        return key

    def store(self, value: object, read: bool, key: object = UNKNOWN) -> tuple[int, int, str | None, object]:
        if read or type(value) is not bytes:
            raise TypeError(f"cache values must be bytes, not {type(value).__name__}")
        size, mode, filename, stored = super().store(value, read, key=key)
        self._written.name = filename
        return (size if filename is None else self.on_disk(size)), mode, filename, stored

    def forget_written(self) -> None:
        self._written.name = None

    def remove_written(self) -> None:
        """Delete the value file this thread's last `store` wrote: its row was never committed."""
        name, self._written.name = getattr(self._written, "name", None), None
        if name is not None:
            self.remove(name)

    def _write(
        self, full_path: str, iterator: Iterable[bytes], mode: str, encoding: str | None = None
    ) -> int:
        """diskcache's, except that a file whose writing failed (a full disk) is deleted, not
        left half-written until the orphan sweep."""
        for attempt in range(1, 11):
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(full_path))
            try:  # another cache may have deleted the folder before the file could be opened
                writer = open(full_path, mode, encoding=encoding)  # noqa: SIM115 (closed below)
            except OSError:
                if attempt == 10:
                    raise
                continue
            try:
                with writer:
                    size = 0
                    for chunk in iterator:
                        size += len(chunk)
                        writer.write(chunk)
                return size
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(full_path)
                raise
        raise AssertionError("unreachable")

    def fetch(self, mode: int, filename: str | None, value: object, read: bool) -> bytes:
        if not read and mode == MODE_RAW and type(value) is bytes:
            return value
        if not read and mode == MODE_BINARY and self.is_value_file(filename, follow=True):
            return bytes(super().fetch(mode, filename, None, False))
        raise RefusedValue(f"refusing a stored value in mode {mode}: only raw bytes in the cache are read")

    def filename(self, key: object = UNKNOWN, value: object = UNKNOWN) -> tuple[str, str]:
        name, full_path = super().filename(key, value)
        if not self.inside(os.path.dirname(full_path)):  # a planted symlinked folder
            raise RefusedValue(f"refusing to write {name}: its folder leads outside the cache")
        return name, full_path

    def remove(self, file_path: object) -> None:
        """Delete a value file of this cache and its emptied folders; refuse anything else."""
        if not self.is_value_file(file_path, follow=False):
            log.warning("refusing to delete %r: not a value file inside the cache", file_path)
            return
        full_path = os.path.join(self._directory, str(file_path))
        with contextlib.suppress(OSError):  # another process may have deleted it first
            os.remove(full_path)
        leaf = os.path.dirname(full_path)
        with contextlib.suppress(OSError):  # not empty: other values live there
            os.rmdir(leaf)
            os.rmdir(os.path.dirname(leaf))

    # -- paths ----------------------------------------------------------------------------

    def is_value_file(self, name: object, *, follow: bool) -> bool:
        """`name` is in diskcache's layout and lies inside the cache; `follow`: the file's
        own real path too (for reads), else its folder's (deleting removes a link itself)."""
        if not (isinstance(name, str) and _VALUE_FILE.fullmatch(name)):
            return False
        full_path = os.path.join(self._directory, name)
        return self.inside(full_path if follow else os.path.dirname(full_path))

    def inside(self, path: str | os.PathLike[str]) -> bool:
        """`path`, with every symlink resolved, lies below the cache directory."""
        return os.path.realpath(path).startswith(self._root + os.sep)

    def on_disk(self, length: int) -> int:
        """Bytes a value file of `length` bytes takes: whole blocks, plus a block for each
        of its two folders (an upper bound: folders are shared once there are many files)."""
        return -(-length // self.block) * self.block + 2 * self.block
