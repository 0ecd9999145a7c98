"""The storage contract behind `ResultCache`, kept small so another backend can slot in.

Four concerns:

* exact tier: key -> bytes with a TTL and a byte size limit, plus aliases (raw-file key ->
  value key) that disappear together with their value. Reading a value never writes (a full
  disk still serves what it holds); `touch` then records the hit, and may fail unnoticed.
  The budget evicts by segment (`segments`): probation, then protected, never pinned;
* fuzzy rows: append-only, one per stored value, each with a store-wide increasing sequence
  number (so per namespace too). Whenever a value is deleted (evicted, swept after its TTL,
  discarded as unreadable), its row goes in the same step and the removal is logged, so an
  in-memory index in any process catches up by reading only what is new: `rows_after` and
  `changes_since`. An expired value not yet swept is never served;
* locks: a per-key lease with an owner and an expiry, for single-flight;
* counters: per-kind outcome counts, latency sums and recent latencies, for all processes,
  as the caller records them (one per request).

A backend that cannot log removals (Redis evicts and expires silently) must instead never
hand out an alias or row whose value is gone: it deletes it when read, and in-memory indexes
forget such rows when a lookup meets them.

Errors: a backend translates its own (SQLite, diskcache, redis-py, parsing) into the
`StoreError` family below, so `ResultCache` turns any of them into a miss without knowing
which backend runs. A backend on a server raises `StoreUnavailable` while the server cannot be
reached and says why in `outage`. A stored entry the backend cannot read as it wrote it (a
tampered or damaged row) is dropped by the backend and reads as missing; a value it refuses
to decode raises `MalformedEntry`, and the caller discards that key.

The backends live in `cache_store.backends` (a directory: `backends.disk`; a Redis server:
`backends.redis`); `backends.open_backend` picks one for a location, never raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .lookup import Kind

#: Opaque position in a store's change log, as returned by `changes_since`.
Cursor = tuple[int, int]


class StoreError(Exception):
    """A store call failed; the request goes on uncached (a miss, or a skipped write)."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached now; the store retries it on later calls."""


class StoreCorrupt(StoreError):
    """The store's own files are damaged: the cache moves them aside and opens a fresh store."""


class MalformedEntry(StoreError):
    """A stored value this code did not write (or refuses to decode): discard its key."""


@dataclass(frozen=True)
class Entry:
    """Everything one `put` writes: the value blob, its alias and its fuzzy row."""

    key: str
    blob: bytes
    expire: float | None  # seconds to live; a pinned entry's once it is unpinned
    alias: str | None
    namespace: str
    phash: int
    signature: bytes
    width: int
    height: int
    has_alpha: bool
    pinned: bool = False
    owner: str | None = None  # `segments.owner_of` the client that stored it


@dataclass(frozen=True)
class FuzzyRow:
    """A stored fuzzy row: what the verifier needs, and where the value lives."""

    seq: int
    key: str
    signature: bytes
    width: int
    height: int
    has_alpha: bool


@dataclass(frozen=True)
class Changes:
    """Rows removed since a cursor; `reset` means "too far behind: reload everything"."""

    cursor: Cursor
    removed: list[tuple[str, int]]
    reset: bool


class Store(Protocol):
    """What `ResultCache` needs of a backend; every method may raise the `StoreError` family."""

    # exact tier
    def get(self, key: str) -> bytes | None:
        """The value, or None if it is gone or expired; never writes."""
        ...

    def touch(self, key: str, owner: str | None, *, pin: bool = False, ttl: float | None = None) -> None:
        """Record that `key` was served: most recently used, and protected if it was in
        probation and `owner` is not the one that stored it (or either is unknown); with
        `pin`, pinned (`ttl`: what a pin unpinned to make room lives on, None: kept)."""
        ...

    def resolve(self, alias: str) -> str | None: ...
    def put(self, entry: Entry) -> None: ...
    def discard(self, key: str) -> None: ...

    # fuzzy rows
    def rows_after(self, namespace: str, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """(seqs int64, hashes uint64) of the namespace's rows after `seq`, in order."""
        ...

    def row(self, namespace: str, seq: int) -> FuzzyRow | None: ...
    def changes_since(self, cursor: Cursor | None) -> Changes: ...

    # locks
    def try_lock(self, key: str, owner: str, ttl: float) -> bool: ...
    def refresh_lock(self, key: str, owner: str, ttl: float) -> bool: ...
    def unlock(self, key: str, owner: str) -> None: ...

    # counters
    def record(self, kind: Kind, ms: float) -> None: ...
    def counters(self) -> dict[str, tuple[int, float]]:
        """name -> (count, summed ms); includes "evictions"."""
        ...

    def latencies(self) -> dict[str, list[float]]:
        """kind -> the most recent latencies in ms (a bounded window)."""
        ...

    def usage(self) -> tuple[int, int]:
        """(entries, bytes on disk)."""
        ...

    def outage(self) -> str | None:
        """Why the store's server cannot be used now, or None; without a round trip."""
        ...

    # housekeeping
    def expire(self) -> None:
        """Delete expired entries (files included) and whatever exceeds the byte budget."""
        ...

    def stale(self) -> bool:
        """True when the store's files were deleted or replaced under it: reopen it."""
        ...

    def clear(self) -> None:
        """Delete every stored result (copies the backend moved aside included), row and
        statistic, but not the locks of computations in flight."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Opened:
    """What opening a backend gave: the store (None: the cache is off) and a line for the UI."""

    store: Store | None
    message: str
