"""The `Store` on one local directory: diskcache for the bytes, side tables for the rest.

Values live in diskcache (files for large ones, `BytesOnlyDisk`, LRU eviction, TTL). The
aliases, fuzzy rows, removal log, locks and counters are tables in diskcache's own SQLite
file, and a trigger on diskcache's `Cache` table deletes a value's alias and fuzzy row in
the same transaction that deletes the value, whoever deletes it (eviction, expiry, clear),
so the fuzzy tier can never point at a value that is gone, even after a kill -9.

Every public method translates SQLite, diskcache and file errors into the `StoreError`
family (`StoreCorrupt` for damaged database files), so callers need not know any of them.

Resources a long-running app must not leak or outgrow:

* connections: one per thread, shared by diskcache and the side tables, closed when its
  thread ends (lease heartbeats and Gradio's worker threads come and go) and all of them at
  `close`, whichever thread opened them, so open handles stay flat however many threads
  used the store, and a store that is replaced lets go of its files at once;
* disk: the byte budget counts what the directory really takes: the SQLite file, its
  write-ahead log and shared-memory file as they are, and value files in whole blocks with
  their folders. The log is kept small (checkpointed after a budget-dependent size and
  truncated when it outgrows it), and values go by segment (`segments`, kept in diskcache's
  `tag` column), least recently used first, until the total fits;
* a full disk: values are read without writing (diskcache's LRU `get` writes the access
  time, and a refused write must not turn a hit into a miss; `touch` records the hit after,
  and may fail). The budget shrinks while the file system has less than its free-space
  reserve left, so the cache never takes the last bytes that uploads and temporary files
  need; a write refused for lack of space evicts to make room and is tried once more;
* expired values: `expire` deletes them with their files (and files no row refers to);
  `discard` deletes a value's row and file even once it has expired (diskcache's own delete
  skips expired rows);
* the directory itself: `stale` notices that it was deleted or replaced, so the owner can
  open a fresh store instead of writing into deleted files;
* stores moved aside: a corrupt SQLite file goes into a `corrupt-*` folder (`quarantine`,
  see `disk_recovery`), and `clear` deletes those folders with everything else.

Rows this code did not write (wrong types in a tampered database) are dropped with their
value and logged, and read as missing.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import diskcache
import numpy as np
from diskcache.core import DBNAME

from ..lookup import Kind
from ..segments import PINNED_SHARE, PROTECTED_SHARE
from ..store import Changes, Cursor, Entry, FuzzyRow, MalformedEntry, StoreCorrupt, StoreError
from .bytes_only_disk import BytesOnlyDisk, RefusedValue

log = logging.getLogger(__name__)

#: A busy database fails the call (a miss) after this long instead of stalling a request.
SQLITE_TIMEOUT_S = 5.0
#: Removal-log rows kept for processes that are behind; one further behind reloads.
REMOVALS_KEPT = 50_000
#: Recent latencies kept per kind for the p95.
LATENCY_WINDOW = 1024
#: Value files younger than this may belong to a write in flight in another process.
ORPHAN_GRACE_S = 60.0
#: The write-ahead log is checkpointed once it holds this share of the byte budget, within
#: these bounds (4 MiB is SQLite's default), and cut back to that size when it outgrew it.
WAL_SHARE = 1 / 64
WAL_BOUNDS = (64 << 10, 4 << 20)
#: A checkpoint that would wait longer for readers is skipped (tried again on a later write).
CHECKPOINT_WAIT_MS = 50
#: Recording a hit's use waits no longer than this for another writer, then is skipped.
TOUCH_WAIT_MS = 50
SQLITE_FILES = (DBNAME, DBNAME + "-wal", DBNAME + "-shm")
#: A corrupt store's SQLite files are moved into a folder named so, inside its directory.
QUARANTINE_PREFIX = "corrupt-"
#: Segments (`segments`) in diskcache's `tag` column; probation is NULL.
PROTECTED, PINNED = 1, 2
#: Free space the cache leaves on its file system for uploads and temporary files: the
#: smaller of these bytes and this share of the file system. Below it, the budget shrinks.
FREE_RESERVE = 256 << 20
FREE_RESERVE_SHARE = 0.05
#: SQLite's result code for "database or disk is full".
SQLITE_FULL = 13
#: What a value takes in the budget's count: a file's blocks, or the bytes of an inline row.
_SIZE = "CASE WHEN filename IS NULL THEN length(value) ELSE size END"

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cs_entry (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    value_key TEXT NOT NULL UNIQUE,
    phash INTEGER NOT NULL,
    signature BLOB NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    has_alpha INTEGER NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS cs_entry_ns_seq ON cs_entry (ns, seq);
CREATE INDEX IF NOT EXISTS cs_cache_segment ON Cache (tag, access_time);
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


def is_corruption(error: BaseException) -> bool:
    """SQLite reports a damaged or foreign file as a plain DatabaseError (not Operational)."""
    return isinstance(error, CorruptStore) or type(error) is sqlite3.DatabaseError


def _translated(method: Callable[..., T]) -> Callable[..., T]:
    """Raise the store's own errors instead of SQLite's, diskcache's and the OS's."""

    @functools.wraps(method)
    def call(self: DiskStore, *args: object, **kwargs: object) -> T:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except RefusedValue as error:
            raise MalformedEntry(str(error)) from error
        except (sqlite3.Error, diskcache.Timeout, OSError) as error:
            self._end_failed_transaction()
            if is_corruption(error):
                raise StoreCorrupt(f"{self.directory / DBNAME}: {error}") from error
            raise StoreError(
                f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            ) from error

    return call


class _Connection:
    """One thread's connection, held by that thread's `threading.local`: when the thread
    ends, the local is released and this closes the connection (in the process that opened
    it only: a forked child must not close what its parent still uses).

    Explicitly, because an unreferenced `sqlite3.Connection` is only freed by the cyclic
    garbage collector (its statement cache refers back to it), whenever that runs.
    """

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.pid = os.getpid()

    def close(self) -> None:
        if self.pid == os.getpid():
            self.con.close()

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()


class _Values(diskcache.Cache):  # type: ignore[misc]  # diskcache ships no type hints
    """diskcache's `Cache` on the store's connection of the calling thread.

    diskcache keeps its own connection per thread, which only the thread that opened it may
    close; sharing the store's (one per thread instead of two) lets the store close every
    connection it opened. `_con` is diskcache's one hook for that (diskcache is pinned).
    """

    def __init__(self, directory: str, connect: Callable[[], sqlite3.Connection], **settings: object) -> None:
        self._connect = connect
        super().__init__(directory, **settings)

    @property
    def _con(self) -> sqlite3.Connection:
        return self._connect()

    def close(self) -> None:
        """The connections belong to the store, which closes them."""


class DiskStore:
    """`Store` on a directory that several threads and processes may share."""

    def __init__(self, directory: Path, *, size_limit: int) -> None:
        self.directory = Path(directory)
        self.size_limit = size_limit
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        self._wal_limit = min(max(int(size_limit * WAL_SHARE), WAL_BOUNDS[0]), WAL_BOUNDS[1])
        self.directory.mkdir(parents=True, exist_ok=True)
        try:  # a failure closes what was opened, before recovery moves the files aside
            self._cache = _Values(
                str(self.directory),
                self._con,
                disk=BytesOnlyDisk,
                size_limit=size_limit,
                eviction_policy="least-recently-used",
                cull_limit=0,  # diskcache culls 10 rows at a time; `_evict_to_limit` takes just enough
                timeout=SQLITE_TIMEOUT_S,
            )
            self._disk: BytesOnlyDisk = self._cache.disk
            self._identity = self._current_identity()
            self._check_integrity()
            self._create_schema()
            self._sweep_orphan_files()
            self._sweep_unindexed_values()
            self._cache.expire()
            self._evict_to_limit()
        except BaseException:
            self.close()
            raise

    # -- exact tier ---------------------------------------------------------------------

    @_translated
    def get(self, key: str) -> bytes | None:
        """The value, read without writing: a full disk still serves what it holds."""
        found = (
            self._con()
            .execute(
                "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1"
                " AND (expire_time IS NULL OR expire_time > ?)",
                (key, time.time()),
            )
            .fetchone()
        )
        if found is None:
            return None
        try:
            mode, filename, value = found
            return bytes(self._disk.fetch(mode, filename, value, False))
        except FileNotFoundError:  # evicted meanwhile, or lost: the caller drops the row
            return None

    @_translated
    def touch(self, key: str, owner: str | None, *, pin: bool = False, ttl: float | None = None) -> None:
        now = time.time()
        promote = (
            "UPDATE Cache SET access_time = ?, tag = CASE WHEN tag IS NULL AND (? IS NULL OR"
            " (SELECT owner FROM cs_entry WHERE value_key = ?) IS NOT ?) THEN ? ELSE tag END"
            " WHERE key = ? AND raw = 1"
        )
        args = (now, owner, key, owner, PROTECTED, key)
        if not pin:  # a hit is not kept waiting for a busy database: its use goes unrecorded
            con = self._con()
            con.execute(f"PRAGMA busy_timeout = {TOUCH_WAIT_MS}")
            try:
                con.execute(promote, args)
            finally:
                con.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT_S * 1000)}")
            return
        with self._transaction() as con:
            con.execute(promote, args)
            self._pin(con, key, ttl, now)

    @_translated
    def resolve(self, alias: str) -> str | None:
        row = self._con().execute("SELECT value_key FROM cs_alias WHERE alias = ?", (alias,)).fetchone()
        return row[0] if row else None

    @_translated
    def put(self, entry: Entry) -> None:
        """Store `entry` after making room for it; a write refused for lack of space evicts
        what the file system needs and is tried once more."""
        incoming = self._bytes_for(len(entry.blob))
        self._evict_to_limit(incoming)
        try:
            self._write(entry)
        except (sqlite3.Error, OSError) as error:
            if not out_of_space(error):
                raise
            log.warning("result cache: the disk is full (%s); evicting to make room, then retrying", error)
            self._end_failed_transaction()
            self._evict_to_limit(
                incoming + self._wal_limit
            )  # the estimate fell short: the log needs room too
            self._write(entry)
        self._evict_to_limit()

    @_translated
    def discard(self, key: str) -> None:
        """Delete the value (expired or not), its file, alias and fuzzy row."""
        self._delete_values("key = ? AND raw = 1", (key,), orphans_of=key)

    # -- fuzzy rows ---------------------------------------------------------------------

    @_translated
    def rows_after(self, namespace: str, seq: int) -> tuple[np.ndarray, np.ndarray]:
        con = self._con()
        rows = con.execute(
            "SELECT seq, phash FROM cs_entry"
            " WHERE ns = ? AND seq > ? AND typeof(phash) = 'integer' ORDER BY seq",
            (namespace, seq),
        ).fetchall()
        for bad_seq, key in con.execute(
            "SELECT seq, value_key FROM cs_entry WHERE ns = ? AND seq > ? AND typeof(phash) != 'integer'",
            (namespace, seq),
        ).fetchall():
            self._drop_malformed(bad_seq, key, "its pHash is not an integer")
        table = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return table[:, 0].copy(), table[:, 1].copy().view(np.uint64)

    @_translated
    def row(self, namespace: str, seq: int) -> FuzzyRow | None:
        found = (
            self._con()
            .execute(
                "SELECT seq, value_key, signature, width, height, has_alpha FROM cs_entry"
                " WHERE seq = ? AND ns = ?",
                (seq, namespace),
            )
            .fetchone()
        )
        if found is None:
            return None
        seq, key, signature, width, height, has_alpha = found
        well_formed = (
            type(key) is str
            and type(signature) is bytes
            and all(type(side) is int and side > 0 for side in (width, height))
            and has_alpha in (0, 1)
            and type(has_alpha) is int
        )
        if not well_formed:
            self._drop_malformed(seq, key, "a column holds the wrong type or an impossible value")
            return None
        return FuzzyRow(seq, key, signature, width, height, bool(has_alpha))

    @_translated
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

    @_translated
    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._transaction() as con:
            con.execute("DELETE FROM cs_lock WHERE key = ? AND expires < ?", (key, now))
            return (
                con.execute(
                    "INSERT OR IGNORE INTO cs_lock VALUES (?, ?, ?)", (key, owner, now + ttl)
                ).rowcount
                == 1
            )

    @_translated
    def refresh_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._transaction() as con:
            return (
                con.execute(
                    "UPDATE cs_lock SET expires = ? WHERE key = ? AND owner = ?",
                    (time.time() + ttl, key, owner),
                ).rowcount
                == 1
            )

    @_translated
    def unlock(self, key: str, owner: str) -> None:
        with self._transaction() as con:
            con.execute("DELETE FROM cs_lock WHERE key = ? AND owner = ?", (key, owner))

    # -- counters -------------------------------------------------------------------------

    @_translated
    def record(self, kind: Kind, ms: float) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO cs_counter (name, n, ms) VALUES (?, 1, ?)"
                " ON CONFLICT (name) DO UPDATE SET n = n + 1, ms = ms + excluded.ms",
                (kind, ms),
            )
            con.execute(
                "INSERT OR REPLACE INTO cs_latency"
                " VALUES (?, (SELECT n FROM cs_counter WHERE name = ?) % ?, ?)",
                (kind, kind, LATENCY_WINDOW, ms),
            )

    @_translated
    def counters(self) -> dict[str, tuple[int, float]]:
        rows = self._con().execute("SELECT name, n, ms FROM cs_counter").fetchall()
        return {name: (n, ms) for name, n, ms in rows}

    @_translated
    def latencies(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for kind, ms in self._con().execute("SELECT kind, ms FROM cs_latency"):
            found.setdefault(kind, []).append(ms)
        return found

    @_translated
    def usage(self) -> tuple[int, int]:
        """(entries, bytes the directory takes on disk, as the byte budget counts them)."""
        return len(self._cache), self.footprint()

    def outage(self) -> None:
        """A local directory has no server to lose; its errors are per call."""
        return None

    # -- housekeeping ---------------------------------------------------------------------

    @_translated
    def expire(self) -> None:
        """Delete expired values with their files and value files no row refers to (a killed
        writer's, or one written while the directory was being deleted), then keep the
        directory within budget (reads move the LRU clock, and the log grows with them)."""
        self._cache.expire()
        self._sweep_orphan_files()
        self._evict_to_limit()

    def stale(self) -> bool:
        """True when the directory or database file was deleted or replaced under this store."""
        try:
            return self._current_identity() != self._identity
        except OSError:
            return True

    @_translated
    def clear(self) -> None:
        """Delete every value, row and statistic (not the locks of computations in flight),
        and the stores moved aside as corrupt: they hold cached results too."""
        try:
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
        finally:
            remove_quarantined(self.directory)

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
        for connection in connections:
            connection.close()

    # -- disk use -------------------------------------------------------------------------

    def footprint(self) -> int:
        """Bytes on disk: the SQLite files as they are, value files as `BytesOnlyDisk` sized them."""
        return self._sqlite_bytes() + int(self._cache.reset("size"))

    def _sqlite_bytes(self) -> int:
        total = 0
        for name in SQLITE_FILES:
            with suppress(FileNotFoundError):
                total += os.stat(self.directory / name).st_size
        return total

    def _evict_to_limit(self, incoming: int = 0) -> None:
        """Make the directory fit its budget with `incoming` more bytes, and leave the file
        system its free-space reserve: protected values over their share go back to
        probation, an oversized write-ahead log is cut back, then values go one at a time,
        least recently used first: probation, then protected, never pinned."""
        self._demote_protected()
        wal_checked = False
        while self._over_budget(incoming):
            if not wal_checked:
                wal_checked = True
                self._shrink_wal()
                continue
            victim = self._victim()
            if victim is None:
                return
            rowid, key, filename = victim
            try:  # the row first, as everywhere: a kill between the two leaves an orphan file
                self._delete_values("rowid = ? AND key = ?", (rowid, key))
            except (sqlite3.Error, OSError) as error:
                if not out_of_space(error) or filename is None:
                    raise
                self._end_failed_transaction()
                self._disk.remove(filename)  # the disk is full: free its blocks for the log first
                with self._transaction() as con:
                    con.execute("DELETE FROM Cache WHERE rowid = ? AND key = ?", (rowid, key))

    def _over_budget(self, incoming: int) -> bool:
        if self.footprint() + incoming > self.size_limit:
            return True
        room = self._room()
        return room is not None and room < incoming

    def _room(self) -> int | None:
        """Free bytes on the file system beyond its reserve (negative: short of it); None if unknown."""
        try:
            fs = os.statvfs(self.directory)
        except (AttributeError, OSError):  # no statvfs (Windows), or the directory is gone
            return None
        reserve = min(FREE_RESERVE, int(FREE_RESERVE_SHARE * fs.f_blocks * fs.f_frsize))
        return fs.f_bavail * fs.f_frsize - reserve

    def _victim(self) -> tuple[int, str, str | None] | None:
        """The next value to evict: probation's least recently used (a tag this code does not
        write counts as probation), then protected's."""
        con = self._con()
        for where in ("tag IS NULL", f"tag NOT IN ({PROTECTED}, {PINNED})", f"tag = {PROTECTED}"):
            found = con.execute(
                f"SELECT rowid, key, filename FROM Cache WHERE {where} ORDER BY access_time LIMIT 1"
            ).fetchone()
            if found is not None:
                return found  # type: ignore[no-any-return]
        return None

    def _demote_protected(self) -> None:
        """Send the least recently used protected values back to probation (keeping their
        access time) until the protected share fits."""
        con = self._con()
        cap = int(PROTECTED_SHARE * self.size_limit)
        (held,) = con.execute(
            f"SELECT coalesce(sum({_SIZE}), 0) FROM Cache WHERE tag = ?", (PROTECTED,)
        ).fetchone()
        if held <= cap:
            return
        demoted = []
        for rowid, size in con.execute(
            f"SELECT rowid, {_SIZE} FROM Cache WHERE tag = ? ORDER BY access_time", (PROTECTED,)
        ).fetchall():
            if held <= cap:
                break
            demoted.append((rowid,))
            held -= size
        with self._transaction() as con:
            con.executemany(f"UPDATE Cache SET tag = NULL WHERE rowid = ? AND tag = {PROTECTED}", demoted)

    def _bytes_for(self, length: int) -> int:
        """What a value of `length` bytes will take in the budget's count."""
        return length if length < self._cache.disk_min_file_size else self._disk.on_disk(length)

    def _shrink_wal(self) -> None:
        """Checkpoint and truncate the log if it outgrew its limit; skipped while readers hold it."""
        try:
            wal = os.stat(self.directory / (DBNAME + "-wal")).st_size
        except FileNotFoundError:
            return
        if wal <= self._wal_limit:
            return
        con = self._con()
        con.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError as error:  # busy: the next write tries again
            log.debug("write-ahead log checkpoint skipped: %s", error)
        finally:
            con.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT_S * 1000)}")

    # -- helpers --------------------------------------------------------------------------

    def _con(self) -> sqlite3.Connection:
        """This thread's connection, closed when the thread ends; a forked child opens its own."""
        held = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            con = sqlite3.connect(
                self.directory / DBNAME,
                timeout=SQLITE_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute(f"PRAGMA journal_size_limit = {self._wal_limit}")
            con.execute(f"PRAGMA wal_autocheckpoint = {max(1, self._wal_limit // 4096)}")
            held = self._local.held = _Connection(con)
            with self._connections_lock:
                self._connections.add(held)
        return held.con

    def _delete_values(self, where: str, args: tuple[object, ...], *, orphans_of: object = None) -> None:
        """Delete the Cache rows `where` selects, then their files. The trigger on Cache takes
        their aliases and fuzzy rows; `orphans_of` names a value key whose rows go even if
        diskcache no longer lists the value."""
        with self._transaction() as con:
            found = con.execute(f"SELECT filename FROM Cache WHERE {where}", args).fetchall()
            con.execute(f"DELETE FROM Cache WHERE {where}", args)
            if orphans_of is not None:
                con.execute("DELETE FROM cs_entry WHERE value_key = ?", (orphans_of,))
                con.execute("DELETE FROM cs_alias WHERE value_key = ?", (orphans_of,))
        for (filename,) in found:
            if filename is not None:
                self._disk.remove(filename)

    def _write(self, entry: Entry) -> None:
        """The value (keeping the segment it earned, if stored before), then its rows."""
        held = self._con().execute("SELECT tag FROM Cache WHERE key = ? AND raw = 1", (entry.key,)).fetchone()
        segment = held[0] if held is not None and held[0] in (PROTECTED, PINNED) else None
        self._disk.forget_written()
        try:
            self._cache.set(
                entry.key, entry.blob, expire=None if segment == PINNED else entry.expire, tag=segment
            )
        except BaseException:
            self._disk.remove_written()  # the value file of a row that was never committed
            raise
        with self._transaction() as con:
            # The value may already be evicted again by another process: then store nothing.
            if not con.execute("SELECT 1 FROM Cache WHERE key = ? AND raw = 1", (entry.key,)).fetchone():
                return
            con.execute("DELETE FROM cs_entry WHERE value_key = ?", (entry.key,))
            con.execute(
                "INSERT INTO cs_entry (ns, value_key, phash, signature, width, height, has_alpha, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.namespace,
                    entry.key,
                    _signed64(entry.phash),
                    entry.signature,
                    entry.width,
                    entry.height,
                    int(entry.has_alpha),
                    entry.owner,
                ),
            )
            if entry.alias is not None:
                con.execute("INSERT OR REPLACE INTO cs_alias VALUES (?, ?)", (entry.alias, entry.key))
            if entry.pinned:
                self._pin(con, entry.key, entry.expire, time.time())
            self._prune_removals(con)

    def _pin(self, con: sqlite3.Connection, key: str, ttl: float | None, now: float) -> None:
        """Pin `key` (in a transaction), unpinning the least recently used pins while the
        pinned share would overflow; a value too large for the share on its own is protected."""
        found = con.execute(f"SELECT {_SIZE}, tag FROM Cache WHERE key = ? AND raw = 1", (key,)).fetchone()
        if found is None or found[1] == PINNED:
            return
        size, cap = found[0], int(PINNED_SHARE * self.size_limit)
        (pinned,) = con.execute(
            f"SELECT coalesce(sum({_SIZE}), 0) FROM Cache WHERE tag = ?", (PINNED,)
        ).fetchone()
        while size <= cap < pinned + size:
            rowid, freed = con.execute(
                f"SELECT rowid, {_SIZE} FROM Cache WHERE tag = ? ORDER BY access_time LIMIT 1", (PINNED,)
            ).fetchone()
            con.execute(
                "UPDATE Cache SET tag = ?, expire_time = ? WHERE rowid = ?",
                (PROTECTED, None if ttl is None else now + ttl, rowid),
            )
            pinned -= freed
        if size > cap:
            log.warning(
                "result cache: a %d-byte value is too large to pin (the pinned share is %d)", size, cap
            )
            con.execute("UPDATE Cache SET tag = ? WHERE key = ? AND raw = 1", (PROTECTED, key))
            return
        con.execute("UPDATE Cache SET tag = ?, expire_time = NULL WHERE key = ? AND raw = 1", (PINNED, key))

    def _end_failed_transaction(self) -> None:
        """Roll back what a failed statement left open (SQLite keeps a transaction open after
        some errors, and diskcache's own COMMIT may fail), so this thread's next call starts clean."""
        held = getattr(self._local, "held", None)
        if held is not None and held.pid == os.getpid():
            with suppress(sqlite3.Error):  # a closed connection, say: nothing to roll back
                if held.con.in_transaction:
                    held.con.execute("ROLLBACK")

    def _current_identity(self) -> tuple[int, int, int, int]:
        directory, database = os.stat(self.directory), os.stat(self.directory / DBNAME)
        return directory.st_dev, directory.st_ino, database.st_dev, database.st_ino

    def _drop_malformed(self, seq: int, key: object, why: str) -> None:
        """Delete a fuzzy row this code did not write, and its value: a miss from now on."""
        log.warning("result cache: dropping malformed fuzzy row %s (%s)", seq, why)
        if type(key) is str:
            self.discard(key)
        with self._transaction() as con:
            con.execute("DELETE FROM cs_entry WHERE seq = ?", (seq,))

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        con = self._con()
        con.execute(begin)
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:  # SQLite may have rolled back already (a full disk, say)
                con.execute("ROLLBACK")
            raise

    def _create_schema(self) -> None:
        con = self._con()
        try:  # executescript commits first, so the script carries its own transaction
            con.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
            if "owner" not in {column[1] for column in con.execute("PRAGMA table_info(cs_entry)")}:
                con.execute("ALTER TABLE cs_entry ADD COLUMN owner TEXT")  # a store of an older version
            con.execute("COMMIT")
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
        """Delete value files no row refers to: left by a process killed mid-write or mid-evict.
        Only files of the cache's own layout whose folder really lies inside it are touched."""
        referenced = {
            os.path.normpath(name)
            for (name,) in self._con().execute("SELECT filename FROM Cache WHERE filename IS NOT NULL")
            if isinstance(name, str)
        }
        cutoff = time.time() - ORPHAN_GRACE_S
        for path in self.directory.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*.val"):
            name = os.path.normpath(path.relative_to(self.directory))
            if name in referenced or not self._disk.is_value_file(name, follow=False):
                continue
            try:
                if path.lstat().st_mtime < cutoff:
                    self._disk.remove(name)
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
            self.discard(key)


def quarantine(directory: Path) -> Path:
    """Move the SQLite files into a fresh `corrupt-*` folder; value files become orphans
    of the new store and are swept when it opens."""
    target = directory / f"{QUARANTINE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    target.mkdir()
    for name in SQLITE_FILES:
        source = directory / name
        if source.exists():
            os.replace(source, target / name)
    return target


def remove_quarantined(directory: Path) -> None:
    """Delete the stores moved aside in `directory`."""
    for folder in directory.glob(QUARANTINE_PREFIX + "*"):
        shutil.rmtree(folder, ignore_errors=True)


def out_of_space(error: BaseException) -> bool:
    """The write failed because the disk (or the user's quota) is full."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(error)
    return False


def _signed64(value: int) -> int:
    """SQLite integers are signed 64-bit: store the unsigned hash's two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value
