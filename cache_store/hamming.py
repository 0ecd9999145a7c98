"""Nearest 64-bit pHashes by Hamming distance: one vectorized XOR + popcount over all rows.

At a million rows that is ~1 ms of numpy work, so the fuzzy tier needs no tree or
multi-index structure; the index only keeps rows in insertion (sequence) order so that
rows added or removed by other processes can be applied incrementally.
"""

from __future__ import annotations

import numpy as np

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_lut(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 through a byte table: the path for numpy < 2."""
    as_bytes = np.ascontiguousarray(words, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    counts: np.ndarray = _BYTE_POPCOUNT[as_bytes].sum(axis=1, dtype=np.uint8)
    return counts


popcount64 = getattr(np, "bitwise_count", popcount_lut)


class HammingIndex:
    """Rows of (sequence number, 64-bit hash), appended in sequence order.

    Removed rows are flagged dead and dropped in one compaction once a quarter of the rows
    are dead, so a stream of evictions costs O(1) each, not a copy of the arrays.
    """

    def __init__(self) -> None:
        self._seqs = np.empty(0, dtype=np.int64)
        self._hashes = np.empty(0, dtype=np.uint64)
        self._alive = np.empty(0, dtype=bool)
        self._size = 0
        self._dead = 0
        self._last_seq = 0

    def __len__(self) -> int:
        return self._size - self._dead

    @property
    def last_seq(self) -> int:
        """The highest sequence number ever added (removals do not lower it)."""
        return self._last_seq

    def extend(self, seqs: np.ndarray, hashes: np.ndarray) -> None:
        """Append rows whose sequence numbers are all above `last_seq`."""
        count = len(seqs)
        if not count:
            return
        if seqs[0] <= self.last_seq or np.any(np.diff(seqs) <= 0):
            raise ValueError("rows must arrive in increasing sequence order")
        self._reserve(self._size + count)
        end = self._size + count
        self._seqs[self._size : end] = seqs
        self._hashes[self._size : end] = hashes
        self._alive[self._size : end] = True
        self._size = end
        self._last_seq = int(seqs[-1])

    def discard(self, seqs: np.ndarray) -> None:
        """Forget rows by sequence number; unknown numbers are ignored."""
        wanted = np.unique(np.asarray(seqs, dtype=np.int64))
        known = self._seqs[: self._size]
        positions = np.searchsorted(known, wanted)
        inside = positions < self._size
        positions = positions[inside]
        positions = positions[known[positions] == wanted[inside]]
        positions = positions[self._alive[positions]]
        self._alive[positions] = False
        self._dead += len(positions)
        if self._dead * 4 > self._size:
            self._compact()

    def nearest(self, query: int, threshold: int, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (seq, distance) pairs within `threshold` bits, nearest first.

        Ties go to the newest row.
        """
        distances = popcount64(self._hashes[: self._size] ^ np.uint64(query))
        rows = np.flatnonzero(distances <= threshold)
        if self._dead:
            rows = rows[self._alive[rows]]
        if not rows.size:
            return []
        order = np.lexsort((-self._seqs[rows], distances[rows]))[:limit]
        return [(int(self._seqs[rows[i]]), int(distances[rows[i]])) for i in order]

    def _reserve(self, needed: int) -> None:
        if needed <= len(self._seqs):
            return
        capacity = max(needed, 2 * len(self._seqs), 1024)
        for name, dtype in (("_seqs", np.int64), ("_hashes", np.uint64), ("_alive", bool)):
            grown = np.empty(capacity, dtype=dtype)
            grown[: self._size] = getattr(self, name)[: self._size]
            setattr(self, name, grown)

    def _compact(self) -> None:
        keep = self._alive[: self._size]
        self._seqs = self._seqs[: self._size][keep].copy()
        self._hashes = self._hashes[: self._size][keep].copy()
        self._alive = np.ones(len(self._seqs), dtype=bool)
        self._size = len(self._seqs)
        self._dead = 0
