"""The in-memory pHash index of each namespace, kept in step with the store.

Every lookup first asks the store what changed since the last one (removed rows from the
removal log, then rows with a higher sequence number), so an entry another process added
or lost is seen at the next lookup without reloading; a namespace's index is loaded from
the store the first time it is searched.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from .hamming import HammingIndex
from .store import Cursor, Store


class FuzzyTier:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._indexes: dict[str, HammingIndex] = {}
        self._cursor: Cursor | None = None
        self._lock = threading.Lock()

    def nearest(self, namespace: str, phash: int, threshold: int, limit: int) -> list[tuple[int, int]]:
        """(seq, distance) of up to `limit` rows within `threshold` bits, nearest first."""
        with self._lock:
            index = self._synced(namespace)
            return index.nearest(phash, threshold, limit)

    def forget(self, namespace: str, seq: int) -> None:
        """Drop a row this process found broken, ahead of the removal log."""
        with self._lock:
            if namespace in self._indexes:
                self._indexes[namespace].discard(np.array([seq], dtype=np.int64))

    def _synced(self, namespace: str) -> HammingIndex:
        changes = self._store.changes_since(self._cursor)
        if changes.reset:
            self._indexes.clear()
        else:
            removed: dict[str, list[int]] = defaultdict(list)
            for row_namespace, seq in changes.removed:
                removed[row_namespace].append(seq)
            for row_namespace, seqs in removed.items():
                if row_namespace in self._indexes:
                    self._indexes[row_namespace].discard(np.array(seqs, dtype=np.int64))
        self._cursor = changes.cursor
        index = self._indexes.setdefault(namespace, HammingIndex())
        index.extend(*self._store.rows_after(namespace, index.last_seq))
        return index
