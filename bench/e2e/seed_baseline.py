"""The seed's cache, rebuilt as a baseline: pHash rows in SQLite, a linear scan per look-up.

As the seed did it: the upload's 64-bit pHash (imagehash, on the decoded picture), one
SQLite row per result holding the hash as hex and the output PNG; a look-up reads every
row and compares `hex_to_hash(row) - h <= 5` in Python, serving the first match, with
no check that the cached picture is really the same one. Only the benchmarks use it.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import imagehash
from PIL import Image

SEED_THRESHOLD = 5


class SeedStyleCache:
    def __init__(self, path: Path, threshold: int = SEED_THRESHOLD) -> None:
        self.path = Path(path)
        self.threshold = threshold
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, phash TEXT, png BLOB)")
        self._db.commit()

    @staticmethod
    def phash(data: bytes) -> imagehash.ImageHash:
        with Image.open(io.BytesIO(data)) as image:
            return imagehash.phash(image)

    def lookup(self, h: imagehash.ImageHash) -> bytes | None:
        with self._lock:
            for row_id, hex_hash in self._db.execute("SELECT id, phash FROM results"):
                if imagehash.hex_to_hash(hex_hash) - h <= self.threshold:
                    return self._db.execute("SELECT png FROM results WHERE id = ?", (row_id,)).fetchone()[0]
        return None

    def put(self, h: imagehash.ImageHash, png: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT INTO results (phash, png) VALUES (?, ?)", (str(h), png))
            self._db.commit()

    def put_many(self, rows: list[tuple[str, bytes]]) -> None:
        """(hex pHash, PNG) rows in one transaction: for filling a large table quickly."""
        with self._lock:
            self._db.executemany("INSERT INTO results (phash, png) VALUES (?, ?)", rows)
            self._db.commit()

    def stylize(self, data: bytes, compute: Callable[[bytes], bytes]) -> tuple[bytes, bool]:
        """(output PNG, whether it was a hit)."""
        h = self.phash(data)
        cached = self.lookup(h)
        if cached is not None:
            return cached, True
        png = compute(data)
        self.put(h, png)
        return png, False

    def close(self) -> None:
        self._db.close()
