"""The `Store` on a Redis server, so app replicas on several hosts share one cache.

Keys, all under one prefix (default ``rc:``; give the cache its own Redis instance):

* ``v:<ns>:<pixel sha>`` hash: ``b`` the stored blob (raw bytes, never pickled) and the
  entry's fuzzy row: ``s`` signature, ``w h a`` size and alpha, ``q`` sequence number,
  ``n`` namespace, ``r`` alias; and its place in the budget: ``g`` segment, ``e`` deadline
  (ms), ``o`` owner, ``z`` bytes. Value and row are one key: Redis evicts or expires both at once.
* ``r:<ns>:<raw sha>`` string: the alias (upload file sha -> value key), expiring with its value.
* ``x:<ns>`` stream: one entry per put, id ``<seq>-0``, fields ``p`` (pHash, 8 bytes big
  endian) and ``k`` (value key). Each replica's in-memory index pulls the entries after its last seq.
  A seq is Redis' clock in microseconds (kept increasing), so the stream is trimmed by age
  (``MINID`` = now - TTL) on every put; with TTL 0, by length. (So a pinned entry's row, too,
  lasts one TTL: after that it is found by its keys only.)
* ``seq``, ``epoch``, ``namespaces``, ``stats`` (counters), ``lat:<kind>`` (recent
  latencies), ``lock:<key>`` (single-flight leases: SET NX PX, token-checked release), and
  the segments' ``hot``, ``pin``, ``due``, ``seg`` (`redis_scripts`).

Byte budget: Redis' own ``maxmemory`` with ``maxmemory-policy volatile-lru``. Only keys with
an expiry may be evicted, and only probation entries (and their aliases) have one, so Redis
evicts the least recently used of probation and never a protected or pinned entry (see
`segments`); their shares are taken of ``maxmemory``, which the store reads at start and at
every sweep, and a protected entry's TTL is enforced by the sweep and by `get`. Bookkeeping
keys have no expiry either, so they are never evicted. Under ``allkeys-lru`` everything
still works, as a plain LRU.

Redis evicts silently, so there is no removal log: resolving an alias or reading a stream
entry checks, in the same Lua call, that its value still exists and deletes the alias or
entry if not (a miss), and replicas forget such rows when a lookup meets them. A new
``epoch`` makes every replica reload its index; a lost ``seq`` is recovered from the clock
and the stream's last id.

Malformed entries (a tampered stream entry, a row field that is not what `put` wrote) are
deleted where they are met and logged, and read as missing. A key of the store's own that
holds another type (or an ``epoch`` or counter that is not a number) is dropped where it is
met and the call tried once more, with one log line: no such key can switch a tier off.
redis-py's errors become the store's own (`StoreUnavailable`, `RedisCommandError`).

Outages: sockets time out fast and one failed call makes every call fail at once with
`StoreUnavailable` until `Backoff` lets a retry through, so a dead Redis adds at most one
timeout to a request. Scripts need a single Redis (or a Sentinel-managed primary), not Cluster.
"""

from __future__ import annotations

import logging
import re
import secrets
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..lookup import KINDS, Kind
from ..segments import PINNED_SHARE, PROTECTED_SHARE
from ..store import Changes, Cursor, Entry, FuzzyRow, StoreError, StoreUnavailable
from .backoff import Backoff
from .redis_scripts import (
    DISCARD,
    EPOCH,
    LOCK,
    PUT,
    RECORD,
    REFRESH,
    RESOLVE,
    ROW,
    ROWS_AFTER,
    SWEEP,
    TOUCH,
    UNLOCK,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "rc:"
#: A request must not hang on a dead, frozen or unreachable server; a 2 MB value over a
#: LAN takes a few milliseconds. A URL's socket_timeout / socket_connect_timeout win.
SOCKET_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 0.25
#: Errors that mean "no usable Redis there": fail fast and retry later.
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.InvalidResponse)
#: Stream entries read per XRANGE when an index loads.
ROWS_PER_READ = 10_000
#: With TTL 0, each namespace's stream keeps about this many entries (~100 B each).
ROWS_KEPT = 4_000_000
#: Recent latencies kept per kind for the p95.
LATENCY_WINDOW = 1024
#: Protected entries past their deadline deleted per sweep call (the sweep repeats).
SWEEP_BATCH = 500
#: What an entry costs Redis beyond its value key (its alias and stream entry), roughly.
ENTRY_OVERHEAD = 256
#: The eviction policy that keeps protected and pinned entries (see the module docstring).
POLICY = "volatile-lru"
_PHASH = struct.Struct(">Q")
#: The store's own keys and the type each must have; a key holding another type is dropped.
_TYPES = {
    "seq": b"string",
    "epoch": b"string",
    "namespaces": b"set",
    "stats": b"hash",
    "hot": b"zset",
    "pin": b"zset",
    "due": b"zset",
    "seg": b"hash",
    **{f"lat:{kind}": b"list" for kind in KINDS},
}
_BOOKKEEPING = tuple(_TYPES)
_KEY_TYPES = (("v:", b"hash"), ("r:", b"string"), ("x:", b"stream"), ("lock:", b"string"))


class RedisCommandError(StoreError):
    """Redis answered with an error (out of memory, wrong type, ...): this call failed."""


class RedisStore:
    """`Store` on the Redis server at `url` (redis://, rediss:// or unix://)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        if not re.fullmatch(r"[\w:.-]*", prefix):
            raise ValueError(f"key prefix may hold letters, digits and _:.- only, not {prefix!r}")
        self.where = describe(url)
        self._prefix = prefix
        # Any: redis-py types its pipelines as returning results, not the pipeline to chain on.
        self._client: Any = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            # one immediate retry on a fresh socket (a pooled one may be stale), none after a timeout
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        self._backoff = Backoff()
        self._budget = 0  # maxmemory as last read; 0: none (the segments' shares are unbounded)
        script = self._script
        self._put, self._touch, self._discard = script(PUT), script(TOUCH), script(DISCARD)
        self._sweep, self._resolve, self._row = script(SWEEP), script(RESOLVE), script(ROW)
        self._epoch, self._rows_after, self._record = script(EPOCH), script(ROWS_AFTER), script(RECORD)
        self._lock, self._refresh, self._unlock = script(LOCK), script(REFRESH), script(UNLOCK)

    # -- exact tier ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value, or None if it is gone or past its deadline (a protected entry that the
        sweep has not reached yet)."""

        def read() -> tuple[bytes | None, bytes | None, int]:
            pipe = self._client.pipeline(transaction=False)
            (blob, deadline), (seconds, micros) = pipe.hmget(self._k(key), "b", "e").time().execute()
            return blob, deadline, seconds * 1000 + micros // 1000

        blob, deadline, now = self._do(read, self._k(key))
        if blob is None or not deadline:
            return blob
        try:
            return blob if int(deadline) > now else None
        except ValueError:  # not what `put` wrote: read as missing, and the caller drops it
            return None

    def touch(self, key: str, owner: str | None, *, pin: bool = False, ttl: float | None = None) -> None:
        protected, pinned = self._caps()
        args: list[str | int] = [
            self._prefix,
            key,
            owner or "",
            int(pin),
            _ms(ttl) if ttl else 0,
            protected,
            pinned,
        ]
        self._do(lambda: self._touch(keys=[self._k(key)], args=args))

    def resolve(self, alias: str) -> str | None:
        key = self._do(lambda: self._resolve(keys=[self._k(alias)], args=[self._prefix]))
        if key is None:
            return None
        try:
            return str(key.decode("ascii"))
        except UnicodeDecodeError:  # not a key `put` wrote: the alias goes
            log.warning("result cache: dropping an alias to a malformed key %r", key[:80])
            self._do(lambda: self._client.delete(self._k(alias)))
            return None

    def put(self, entry: Entry) -> None:
        keys = [self._k(entry.key), self._stream(entry.namespace)]
        if entry.alias is not None:
            keys.append(self._k(entry.alias))
        protected, pinned = self._caps()
        args: list[bytes | str | int] = [
            self._prefix,
            entry.blob,
            entry.signature,
            entry.width,
            entry.height,
            int(entry.has_alpha),
            _PHASH.pack(entry.phash),
            _ms(entry.expire) if entry.expire else 0,
            ROWS_KEPT,
            entry.key,
            entry.alias or "",
            entry.namespace,
            entry.owner or "",
            int(entry.pinned),
            ENTRY_OVERHEAD,
            protected,
            pinned,
        ]
        self._do(lambda: self._put(keys=keys, args=args))

    def discard(self, key: str) -> None:
        self._do(lambda: self._discard(keys=[self._k(key)], args=[self._prefix, key]))

    # -- fuzzy rows ---------------------------------------------------------------------

    def rows_after(self, namespace: str, seq: int) -> tuple[np.ndarray, np.ndarray]:
        seqs, hashes = [np.empty(0, np.int64)], [np.empty(0, np.uint64)]
        start = f"({seq}-0" if seq else "-"
        with self._call():
            while True:  # in chunks, so that one call never blocks Redis for long
                text, words, count, dropped, last = self._rows_after(
                    keys=[self._stream(namespace)], args=[start, ROWS_PER_READ]
                )
                if dropped:
                    log.warning(
                        "result cache: dropped %d malformed stream entries of namespace %s",
                        dropped,
                        namespace,
                    )
                if text:
                    seqs.append(np.array(text.split()).astype(np.int64))
                    hashes.append(np.frombuffer(words, dtype=">u8").astype(np.uint64))
                if count < ROWS_PER_READ:
                    break
                start = "(" + last.decode()
        return np.concatenate(seqs), np.concatenate(hashes)

    def row(self, namespace: str, seq: int) -> FuzzyRow | None:
        with self._call():
            found = self._row(keys=[self._stream(namespace)], args=[f"{seq}-0", self._prefix])
        if found is None:
            return None
        key, signature, width, height, alpha = found
        try:
            row = FuzzyRow(seq, key.decode("ascii"), signature, _side(width), _side(height), _flag(alpha))
        except (ValueError, TypeError) as error:  # not what `put` wrote: the value goes with it
            log.warning(
                "result cache: dropping malformed fuzzy row %s of namespace %s (%s)", seq, namespace, error
            )
            self.discard(key.decode("ascii", "replace"))
            return None
        return row

    def changes_since(self, cursor: Cursor | None) -> Changes:
        """Only resets: Redis removes keys silently, so dead rows are dropped when met."""
        with self._call():
            epoch = self._epoch(keys=[self._k("epoch")], args=[secrets.randbits(62)])
        return Changes((int(epoch), 0), [], reset=cursor is None or cursor[0] != int(epoch))

    # -- locks ----------------------------------------------------------------------------

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._call():
            return bool(self._lock(keys=[self._k(f"lock:{key}")], args=[owner, _ms(ttl)]) == 1)

    def refresh_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._call():
            return bool(self._refresh(keys=[self._k(f"lock:{key}")], args=[owner, _ms(ttl)]) == 1)

    def unlock(self, key: str, owner: str) -> None:
        with self._call():
            self._unlock(keys=[self._k(f"lock:{key}")], args=[owner])

    # -- counters -------------------------------------------------------------------------

    def record(self, kind: Kind, ms: float) -> None:
        keys = [self._k("stats"), self._k(f"lat:{kind}")]
        with self._call():
            self._record(keys=keys, args=[kind, repr(ms), LATENCY_WINDOW])

    def counters(self) -> dict[str, tuple[int, float]]:
        """Per-kind counts, plus "evictions": keys Redis evicted or expired, and protected
        entries swept after their TTL, since `clear`."""

        def read() -> tuple[dict[bytes, bytes], dict[str, Any]]:
            pipe = self._client.pipeline(transaction=False)
            return tuple(pipe.hgetall(self._k("stats")).info("stats").execute())

        raw, info = self._do(read, self._k("stats"))
        stats = {name.decode(errors="replace"): _number(value) for name, value in raw.items()}
        found = {
            name[:-2]: (int(n), stats.get(name[:-2] + ":ms", 0.0))
            for name, n in stats.items()
            if name.endswith(":n")
        }
        dropped = int(info.get("evicted_keys", 0)) + int(info.get("expired_keys", 0))
        since = stats.get("dropped_at_clear", 0)
        dropped = int(dropped - since if dropped >= since else dropped)
        found["evictions"] = (dropped + int(stats.get("swept", 0)), 0.0)
        return found

    def latencies(self) -> dict[str, list[float]]:
        names = [self._k(f"lat:{kind}") for kind in KINDS]

        def read() -> list[list[bytes]]:
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.lrange(name, 0, -1)
            return list(pipe.execute())

        found = zip(KINDS, self._do(read, *names), strict=True)
        return {kind: [ms for ms in map(_number, values) if ms >= 0] for kind, values in found if values}

    def usage(self) -> tuple[int, int]:
        """(results, bytes Redis uses). Redis evicts silently, so results are estimated
        from its key count: every key but a few bookkeeping ones and the leases of
        computations in flight is a value or an alias."""

        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.dbsize().info("memory").hmget(self._k("stats"), "puts", "aliased")
            pipe.exists(*map(self._k, _BOOKKEEPING)).scard(self._k("namespaces"))
            return list(pipe.execute())

        keys, memory, (puts, aliased), bookkeeping, streams = self._do(
            read, self._k("stats"), self._k("namespaces")
        )
        values = max(0, keys - bookkeeping - streams)
        puts, aliased = int(_number(puts)), int(_number(aliased))
        per_entry = 1 + aliased / puts if puts > 0 else 1
        return min(max(puts, 0), round(values / per_entry)), int(memory["used_memory"])

    # -- housekeeping ---------------------------------------------------------------------

    def expire(self) -> None:
        """Redis expires probation entries itself; protected ones, which it must not evict,
        are deleted here once past their deadline. Also re-reads the memory budget."""
        self._read_budget()
        while self._do(lambda: self._sweep(args=[self._prefix, SWEEP_BATCH])) >= SWEEP_BATCH:
            pass

    def stale(self) -> bool:
        """A server has no files to lose under us; a flushed one is seen through `epoch`."""
        return False

    def clear(self) -> None:
        """Delete every value, row and statistic (not the locks of computations in flight)."""
        locks = self._k("lock:").encode()
        with self._call():
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=self._prefix + "*", count=1000):
                if not key.startswith(locks):
                    batch.append(key)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)
            info = self._client.info("stats")
            dropped = int(info.get("evicted_keys", 0)) + int(info.get("expired_keys", 0))
            self._client.hset(self._k("stats"), "dropped_at_clear", dropped)
            self._client.set(self._k("epoch"), secrets.randbits(62))

    def close(self) -> None:
        self._client.close()

    # -- health ---------------------------------------------------------------------------

    def outage(self) -> str | None:
        """Why Redis cannot be used now, or None; costs no round trip."""
        reason = self._backoff.reason
        if reason is None:
            return None
        retry = self._backoff.seconds_to_retry()
        return f"Redis at {self.where} is unreachable ({reason}); retrying in {retry:.1f} s."

    def config_warning(self) -> str | None:
        """What is wrong with the server's memory settings for this cache, if anything."""
        limit, policy = self._read_budget()
        if limit and policy == POLICY:
            return None
        advice = (
            f"set maxmemory (about 75 % of the host's memory) and maxmemory-policy {POLICY}, so that "
            "Redis evicts only results nobody came back for, never pinned examples or results "
            "that visitors were served again"
        )
        if not limit:
            return (
                f"Redis at {self.where} has no maxmemory: {advice}, "
                "or the cache grows until Redis refuses writes."
            )
        if policy.startswith("allkeys"):
            return (
                f"Redis at {self.where} has maxmemory-policy {policy}, which may evict any result: {advice}."
            )
        return f"Redis at {self.where} has maxmemory-policy {policy}: {advice}."

    # -- helpers --------------------------------------------------------------------------

    def _script(self, text: str) -> Callable[..., Any]:
        """A Lua script (`redis_scripts`): its result, after logging the keys it dropped."""
        registered = self._client.register_script(text)

        def run(keys: list[str] | None = None, args: list[Any] | None = None) -> Any:
            result, dropped = registered(keys=keys or [], args=args or [])
            for what in dropped:  # "<key> (<why>)"
                log.warning("result cache: dropped Redis key %s", what.decode(errors="replace"))
            return result

        return run

    def _read_budget(self) -> tuple[int, str]:
        """(maxmemory, maxmemory-policy) as the server says now; the shares follow maxmemory."""
        with self._call():
            memory = self._client.info("memory")
        limit, policy = int(memory.get("maxmemory", 0)), str(memory.get("maxmemory_policy", ""))
        self._budget = limit
        return limit, policy

    def _caps(self) -> tuple[int, int]:
        """Bytes that protected and pinned entries may hold (-1: no budget, no cap)."""
        if not self._budget:
            return -1, -1
        return int(PROTECTED_SHARE * self._budget), int(PINNED_SHARE * self._budget)

    def _do(self, action: Callable[[], T], *names: str) -> T:
        """`action()` under `_call`; if Redis says a key holds the wrong type, drop the store's
        keys (`names` and the bookkeeping ones) that do, then try once more."""
        for attempt in (1, 2):
            with self._call():
                try:
                    return action()
                except redis.ResponseError as error:
                    if attempt == 2 or "WRONGTYPE" not in str(error) or not self._repair(names):
                        raise
        raise AssertionError("unreachable")

    def _repair(self, names: tuple[str, ...]) -> bool:
        """Delete whichever of `names` and the bookkeeping keys holds another type than the
        store writes there; True if any did."""
        candidates = list(dict.fromkeys([*names, *map(self._k, _BOOKKEEPING)]))
        pipe = self._client.pipeline(transaction=False)
        for name in candidates:
            pipe.type(name)
        wrong = [
            (name, found)
            for name, found in zip(candidates, pipe.execute(), strict=True)
            if found != b"none" and found != self._expected_type(name)
        ]
        for name, found in wrong:
            expected = self._expected_type(name).decode()
            log.warning(
                "result cache: dropped Redis key %s (a %s where the store keeps a %s)",
                name,
                found.decode(),
                expected,
            )
        if wrong:
            self._client.delete(*(name for name, _ in wrong))
        return bool(wrong)

    def _expected_type(self, name: str) -> bytes:
        bare = name[len(self._prefix) :]
        if bare in _TYPES:
            return _TYPES[bare]
        return next((kind for start, kind in _KEY_TYPES if bare.startswith(start)), b"none")

    @contextmanager
    def _call(self) -> Iterator[None]:
        """Fail fast while Redis is down; turn redis-py's errors into the store's own."""
        if not self._backoff.allow():
            raise StoreUnavailable(self.outage() or f"Redis at {self.where} is unreachable")
        try:
            yield
        except _UNREACHABLE as error:
            self._backoff.failed(str(error) or type(error).__name__)
            raise StoreUnavailable(self.outage()) from error
        except redis.RedisError as error:
            self._backoff.succeeded()
            raise RedisCommandError(f"Redis at {self.where}: {error}") from error
        self._backoff.succeeded()

    def _k(self, name: str) -> str:
        return self._prefix + name

    def _stream(self, namespace: str) -> str:
        return f"{self._prefix}x:{namespace}"


def describe(url: str) -> str:
    """host:port/db of a Redis URL, without its credentials (for logs and the UI).

    Raises ValueError for a bad port or database (redis-py would quietly use database 0).
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    database = parts.path.strip("/") or "0"
    if not database.isdigit():
        raise ValueError(f"the database in a Redis URL is a number, not {database!r}")
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{database}"


def _number(text: object) -> float:
    """A counter's value, or 0 for anything that is not a number (a tampered field)."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _side(text: object) -> int:
    if not (isinstance(text, bytes) and text.isdigit() and 0 < int(text) < 1 << 31):
        raise ValueError(f"a side of {text!r} pixels")
    return int(text)


def _flag(text: object) -> bool:
    if text not in (b"0", b"1"):
        raise ValueError(f"an alpha flag of {text!r}")
    return text == b"1"
