"""Opening the store without ever failing the app: recover what can be, else run uncached.

A corrupt SQLite file is moved aside into `corrupt-<time>/` inside the cache directory and
a fresh store is started; an unusable directory (not creatable, not writable, disk full)
leaves the cache off. Opening is serialized across processes by a file lock, so two
processes that start on the same broken store do not move each other's fresh store aside.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import diskcache

from ..store import Opened, StoreError
from .disk import DiskStore, is_corruption, quarantine

log = logging.getLogger(__name__)

_OPEN_LOCK = ".open.lock"


def open_disk_store(directory: Path, *, size_limit: int) -> Opened:
    """Open the store in `directory`, moving a corrupt one aside; never raises."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _exclusive(directory):
            try:
                store = DiskStore(directory, size_limit=size_limit)
            except Exception as error:
                if not is_corruption(error):
                    raise
                moved = quarantine(directory)
                log.warning("result cache in %s was corrupt (%s); moved it to %s", directory, error, moved)
                store = DiskStore(directory, size_limit=size_limit)
                return Opened(store, f"Result cache recovered: a corrupt store was moved to {moved}.")
    except (OSError, sqlite3.Error, diskcache.Timeout, StoreError) as error:
        log.warning("result cache in %s is unusable, running uncached: %s", directory, error)
        return Opened(None, f"Result cache is off ({error}); every photo is computed.")
    except Exception as error:
        log.exception("result cache in %s could not be opened, running uncached", directory)
        return Opened(
            None, f"Result cache is off ({type(error).__name__}: {error}); every photo is computed."
        )
    return Opened(store, f"Result cache ready in {directory}.")


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the directory's open-lock file where the OS offers one."""
    with open(directory / _OPEN_LOCK, "a") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except (ImportError, OSError):  # not POSIX, or a filesystem without flock
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
