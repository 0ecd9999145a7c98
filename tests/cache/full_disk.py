"""The full-disk scenario that `test_full_disk.py` runs on a tiny file system of its own.

Run as ``python -m tests.cache.full_disk DIR`` where DIR is an empty, small file system (an
8 MB tmpfs that the test mounts in a private mount namespace); prints what it saw as one
JSON object, which the test judges. It raises only if the cache does (a failed request).

Steps, on one cache whose byte budget (64 MB) is larger than the file system:

1. fill: 60 results of 300 KB; the cache keeps the file system's free-space reserve;
2. full: a filler file takes every byte left; stored results must still be served, a new
   result is stored by evicting others, and a miss is computed and stored the same way;
3. write refused: without a reserve, with the write-ahead log cut back and 8 KB left, a small
   result (stored inside SQLite) seems to fit, but its write needs pages of log that are not
   there: it is refused (SQLITE_FULL) and must evict, then succeed on its retry;
4. recovered: the filler goes; new results are kept again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

from cache_store import Fingerprint, ResultCache
from cache_store.backends import disk
from tests.support.cache import check_store, synthetic_fingerprint, value_for, value_matches

NS = "ns"
SIZE = 300_000


def free_bytes(path: Path) -> int:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize


def reserve(path: Path) -> int:
    fs = os.statvfs(path)
    return min(disk.FREE_RESERVE, int(disk.FREE_RESERVE_SHARE * fs.f_blocks * fs.f_frsize))


def fill(path: Path) -> None:
    """Write `path` until the file system refuses another byte."""
    with open(path, "wb", buffering=0) as filler:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    filler.write(b"\0" * chunk)
            except OSError:
                continue


def served(cache: ResultCache, fp: Fingerprint) -> bool:
    hit = cache.lookup_raw(NS, fp.raw_sha)
    return hit is not None and hit.kind == "exact" and value_matches(fp.pixel_sha, hit.value)


def put(cache: ResultCache, seed: int, size: int = SIZE) -> Fingerprint:
    fp = synthetic_fingerprint(seed)
    cache.put(NS, fp, value_for(fp, size), {"seed": seed})
    return fp


def truncate_log(directory: Path) -> None:
    with sqlite3.connect(directory / "cache.db") as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class Messages(logging.Handler):
    """The cache's log lines, to tell which paths a step took."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


def main(root: Path) -> dict[str, object]:
    directory, filler = root / "cache", root / "filler"
    warnings = Messages()
    logging.getLogger("cache_store").addHandler(warnings)
    seen: dict[str, object] = {"reserve": reserve(root)}
    with ResultCache(directory, size_limit=64 << 20) as cache:
        # 1. fill
        prints, lowest = [], free_bytes(root)
        for seed in range(60):
            prints.append(put(cache, seed))
            lowest = min(lowest, free_bytes(root))
        stored = [fp for fp in prints if served(cache, fp)]
        seen["fill"] = {"lowest_free": lowest, "kept": len(stored), "latest_kept": served(cache, prints[-1])}

        # 2. full (the log cut back first, so that any write needs room the disk lacks)
        truncate_log(directory)
        fill(filler)
        full = {"free_at_start": free_bytes(root)}
        full["served"] = sum(served(cache, fp) for fp in stored)
        full["stored_served"] = len(stored)
        full["touch_refused"] = warnings.saw("use could not be recorded")
        new = put(cache, 100)
        full["new_served"] = served(cache, new)
        miss = synthetic_fingerprint(101)
        result = cache.get_or_compute(NS, miss, lambda: (value_for(miss, SIZE), {}))
        full["miss"] = result.kind
        full["miss_served"] = served(cache, miss)
        full["free_after"] = free_bytes(root)
        full["healthy"] = cache.healthy
        seen["full"] = full

        # 3. write refused
        disk.FREE_RESERVE = 0
        os.remove(filler)
        truncate_log(directory)
        fill(filler)
        os.truncate(filler, filler.stat().st_size - 8192)
        retry = "evicting to make room, then retrying"
        before = warnings.count(retry)
        refused = put(cache, 200, size=2_000)
        seen["refused"] = {"retried": warnings.count(retry) - before, "served": served(cache, refused)}
        values_while_full = check_store(directory)["values"]

        # 4. recovered
        os.remove(filler)
        later = [put(cache, seed) for seed in range(300, 303)]
        seen["recovered"] = {
            "served": sum(served(cache, fp) for fp in later),
            "of": len(later),
            "values_while_full": values_while_full,
        }
    seen["store"] = check_store(directory)
    return seen


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
