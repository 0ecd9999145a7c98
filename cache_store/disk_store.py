"""The `Store` on one local directory: diskcache for the bytes, side tables for the rest.

Values live in diskcache (files for large ones, `BytesOnlyDisk`, LRU eviction, TTL). The
aliases, fuzzy rows, removal log, locks and counters are tables in diskcache's own SQLite
file, and a trigger on diskcache's `Cache` table deletes a value's alias and fuzzy row in
the same transaction that deletes the value, whoever deletes it (eviction, expiry, clear),
so the fuzzy tier can never point at a value that is gone, even after a kill -9.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import diskcache
import numpy as np
from diskcache.core import DBNAME

from .bytes_disk import BytesOnlyDisk
from .store import Changes, Cursor, Entry, FuzzyRow

#: A busy database fails the call (a miss) after this long instead of stalling a request.
SQLITE_TIMEOUT_S = 5.0
#: Removal-log rows kept for processes that are behind; one further behind reloads.
REMOVALS_KEPT = 50_000
#: Recent latencies kept per kind for the p95.
LATENCY_WINDOW = 1024
#: Value files younger than this may belong to a write in flight in another process.
ORPHAN_GRACE_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cs_entry (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    value_key TEXT NOT NULL UNIQUE,
    phash INTEGER NOT NULL,
    signature BLOB NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    has_alpha INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cs_entry_ns_seq ON cs_entry (ns, seq);
CREATE TABLE IF NOT EXISTS cs_alias (alias TEXT PRIMARY KEY, value_key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cs_alias_value ON cs_alias (value_key);
CREATE TABLE IF NOT EXISTS cs_removed (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cs_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO cs_meta VALUES ('epoch', 0), ('removed_floor', 0);
CREATE TABLE IF NOT EXISTS cs_counter (
    name TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0, ms REAL NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO cs_counter (name) VALUES ('evictions');
CREATE TABLE IF NOT EXISTS cs_latency (
    kind TEXT NOT NULL, slot INTEGER NOT NULL, ms REAL NOT NULL, PRIMARY KEY (kind, slot)
);
CREATE TABLE IF NOT EXISTS cs_lock (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS cs_value_deleted AFTER DELETE ON Cache BEGIN
    DELETE FROM cs_entry WHERE value_key = OLD.key;
    DELETE FROM cs_alias WHERE value_key = OLD.key;
    UPDATE cs_counter SET n = n + 1 WHERE name = 'evictions';
END;
CREATE TRIGGER IF NOT EXISTS cs_entry_deleted AFTER DELETE ON cs_entry BEGIN
    INSERT INTO cs_removed (ns, seq) VALUES (OLD.ns, OLD.seq);
END;
"""


class CorruptStore(sqlite3.DatabaseError):
    """SQLite's own integrity check failed."""


class DiskStore:
    """`Store` on a directory that several threads and processes may share."""

    def __init__(self, directory: Path, *, size_limit: int) -> None:
        self.directory = Path(directory)
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._cache = diskcache.Cache(
            str(self.directory),
            disk=BytesOnlyDisk,
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            cull_limit=0,  # diskcache culls 10 rows at a time; `_evict_to_limit` takes just enough
            timeout=SQLITE_TIMEOUT_S,
        )
        try:
            self._check_integrity()
            self._create_schema()
            self._sweep_orphan_files()
            self._sweep_unindexed_values()
            self._cache.expire()
        except BaseException:
            self.close()
            raise

    # -- exact tier ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._cache.get(key)

    def resolve(self, alias: str) -> str | None:
        row = self._con().execute("SELECT value_key FROM cs_alias WHERE alias = ?", (alias,)).fetchone()
        return row[0] if row else None

    def put(self, entry: Entry) -> None:
        self._cache.set(entry.key, entry.blob, expire=entry.expire)
        with self._transaction() as con:
            # The value may already be evicted again by another process: then store nothing.
            if not con.execute("SELECT 1 FROM Cache WHERE key = ? AND raw = 1", (entry.key,)).fetchone():
                return
            con.execute("DELETE FROM cs_entry WHERE value_key = ?", (entry.key,))
            con.execute(
                "INSERT INTO cs_entry (ns, value_key, phash, signature, width, height, has_alpha)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.namespace,
                    entry.key,
                    _signed64(entry.phash),
                    entry.signature,
                    entry.width,
                    entry.height,
                    int(entry.has_alpha),
                ),
            )
            if entry.alias is not None:
                con.execute("INSERT OR REPLACE INTO cs_alias VALUES (?, ?)", (entry.alias, entry.key))
            self._prune_removals(con)
        self._evict_to_limit()

    def discard(self, key: str) -> None:
        self._cache.delete(key)
        with self._transaction() as con:  # rows of a value diskcache no longer lists
            con.execute("DELETE FROM cs_entry WHERE value_key = ?", (key,))
            con.execute("DELETE FROM cs_alias WHERE value_key = ?", (key,))

    # -- fuzzy rows ---------------------------------------------------------------------

    def rows_after(self, namespace: str, seq: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._con().execute(
            "SELECT seq, phash FROM cs_entry WHERE ns = ? AND seq > ? ORDER BY seq", (namespace, seq)
        ).fetchall()
        table = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return table[:, 0].copy(), table[:, 1].copy().view(np.uint64)

    def row(self, namespace: str, seq: int) -> FuzzyRow | None:
        found = self._con().execute(
            "SELECT seq, value_key, signature, width, height, has_alpha FROM cs_entry WHERE seq = ? AND ns = ?",
            (seq, namespace),
        ).fetchone()
        if found is None:
            return None
        seq, key, signature, width, height, has_alpha = found
        return FuzzyRow(seq, key, bytes(signature), width, height, bool(has_alpha))

    def changes_since(self, cursor: Cursor | None) -> Changes:
        with self._transaction("BEGIN") as con:  # one snapshot for both reads
            epoch, floor, last = con.execute(
                "SELECT (SELECT value FROM cs_meta WHERE name = 'epoch'),"
                " (SELECT value FROM cs_meta WHERE name = 'removed_floor'),"
                " (SELECT max(id) FROM cs_removed)"
            ).fetchone()
            last = floor if last is None else last
            if cursor is None or cursor[0] != epoch or cursor[1] < floor:
                return Changes((epoch, last), [], reset=True)
            removed = con.execute(
                "SELECT ns, seq FROM cs_removed WHERE id > ? AND id <= ? ORDER BY id", (cursor[1], last)
            ).fetchall()
        return Changes((epoch, last), removed, reset=False)

    # -- locks ----------------------------------------------------------------------------

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._transaction() as con:
            con.execute("DELETE FROM cs_lock WHERE key = ? AND expires < ?", (key, now))
            return con.execute("INSERT OR IGNORE INTO cs_lock VALUES (?, ?, ?)", (key, owner, now + ttl)).rowcount == 1

    def refresh_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._transaction() as con:
            return (
                con.execute(
                    "UPDATE cs_lock SET expires = ? WHERE key = ? AND owner = ?", (time.time() + ttl, key, owner)
                ).rowcount
                == 1
            )

    def unlock(self, key: str, owner: str) -> None:
        with self._transaction() as con:
            con.execute("DELETE FROM cs_lock WHERE key = ? AND owner = ?", (key, owner))

    # -- counters -------------------------------------------------------------------------

    def record(self, kind: str, ms: float) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO cs_counter (name, n, ms) VALUES (?, 1, ?)"
                " ON CONFLICT (name) DO UPDATE SET n = n + 1, ms = ms + excluded.ms",
                (kind, ms),
            )
            con.execute(
                "INSERT OR REPLACE INTO cs_latency VALUES (?, (SELECT n FROM cs_counter WHERE name = ?) % ?, ?)",
                (kind, kind, LATENCY_WINDOW, ms),
            )

    def counters(self) -> dict[str, tuple[int, float]]:
        rows = self._con().execute("SELECT name, n, ms FROM cs_counter").fetchall()
        return {name: (n, ms) for name, n, ms in rows}

    def latencies(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for kind, ms in self._con().execute("SELECT kind, ms FROM cs_latency"):
            found.setdefault(kind, []).append(ms)
        return found

    def usage(self) -> tuple[int, int]:
        return len(self._cache), self._cache.volume()

    def outage(self) -> None:
        """A local directory has no server to lose; its errors are per call."""
        return None

    # -- housekeeping ---------------------------------------------------------------------

    def expire(self) -> None:
        self._cache.expire()

    def clear(self) -> None:
        """Delete every value, row and statistic (not the locks of computations in flight)."""
        self._cache.clear()
        with self._transaction() as con:
            con.execute("DELETE FROM cs_entry")
            con.execute("DELETE FROM cs_alias")
            con.execute(
                "UPDATE cs_meta SET value = (SELECT coalesce(max(id), value) FROM cs_removed)"
                " WHERE name = 'removed_floor'"
            )
            con.execute("DELETE FROM cs_removed")
            con.execute("UPDATE cs_meta SET value = value + 1 WHERE name = 'epoch'")
            con.execute("UPDATE cs_counter SET n = 0, ms = 0")
            con.execute("DELETE FROM cs_latency")

    def close(self) -> None:
        self._cache.close()
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, con in connections:
            if pid == os.getpid():  # never close a connection a forked parent still uses
                con.close()

    # -- helpers --------------------------------------------------------------------------

    def _con(self) -> sqlite3.Connection:
        """This thread's connection; a forked child opens its own instead of sharing one."""
        con = getattr(self._local, "con", None)
        if con is None or self._local.pid != os.getpid():
            con = sqlite3.connect(
                self.directory / DBNAME, timeout=SQLITE_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            con.execute("PRAGMA synchronous = NORMAL")
            self._local.con, self._local.pid = con, os.getpid()
            with self._connections_lock:
                self._connections.append((os.getpid(), con))
        return con

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        con = self._con()
        con.execute(begin)
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _evict_to_limit(self) -> None:
        """Delete least-recently-used values, one at a time, until the store fits its limit."""
        while self._cache.volume() > self._cache.size_limit:
            oldest = self._con().execute("SELECT key FROM Cache ORDER BY access_time LIMIT 1").fetchone()
            if oldest is None:
                return
            self._cache.delete(oldest[0])

    def _create_schema(self) -> None:
        con = self._con()
        try:  # executescript commits first, so the script carries its own transaction
            con.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def _prune_removals(self, con: sqlite3.Connection) -> None:
        (last,) = con.execute("SELECT coalesce(max(id), 0) FROM cs_removed").fetchone()
        (floor,) = con.execute("SELECT value FROM cs_meta WHERE name = 'removed_floor'").fetchone()
        if last - floor > 2 * REMOVALS_KEPT:
            con.execute("DELETE FROM cs_removed WHERE id <= ?", (last - REMOVALS_KEPT,))
            con.execute("UPDATE cs_meta SET value = ? WHERE name = 'removed_floor'", (last - REMOVALS_KEPT,))

    def _check_integrity(self) -> None:
        result = [row[0] for row in self._con().execute("PRAGMA quick_check").fetchall()]
        if result != ["ok"]:
            raise CorruptStore("; ".join(map(str, result[:3])))

    def _sweep_orphan_files(self) -> None:
        """Delete value files no row refers to: left by a process killed mid-write or mid-evict."""
        referenced = {
            os.path.normpath(name)
            for (name,) in self._con().execute("SELECT filename FROM Cache WHERE filename IS NOT NULL")
        }
        cutoff = time.time() - ORPHAN_GRACE_S
        for path in self.directory.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*.val"):
            if os.path.normpath(path.relative_to(self.directory)) in referenced:
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass


    def _sweep_unindexed_values(self) -> None:
        """Delete values that never got their fuzzy row: `put` writes the value, then the row,
        in two transactions, and a process killed between them leaves a value no row points at."""
        cutoff = time.time() - ORPHAN_GRACE_S
        keys = [
            key
            for (key,) in self._con().execute(
                "SELECT key FROM Cache WHERE raw = 1 AND store_time < ?"
                " AND key NOT IN (SELECT value_key FROM cs_entry)",
                (cutoff,),
            )
        ]
        for key in keys:
            self._cache.delete(key)


def _signed64(value: int) -> int:
    """SQLite integers are signed 64-bit: store the unsigned hash's two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value
