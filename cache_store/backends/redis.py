"""The `Store` on a Redis server, so app replicas on several hosts share one cache.

Keys, all under one prefix (default ``rc:``; give the cache its own Redis instance):

* ``v:<ns>:<pixel sha>`` hash: ``b`` the stored blob (raw bytes, never pickled) and the
  entry's fuzzy row: ``s`` signature, ``w h a`` size and alpha, ``q`` sequence number,
  ``n`` namespace, ``r`` alias. Value and row are one key: Redis evicts or expires both at once.
* ``r:<ns>:<raw sha>`` string: the alias (upload file sha -> value key), with the value's TTL.
* ``x:<ns>`` stream: one entry per put, id ``<seq>-0``, fields ``p`` (pHash, 8 bytes big
  endian) and ``k`` (value key). Each replica's in-memory index pulls the entries after its last seq.
  A seq is Redis' clock in microseconds (kept increasing), so the stream is trimmed by age
  (``MINID`` = now - TTL) on every put; with TTL 0, by length.
* ``seq``, ``epoch``, ``namespaces``, ``stats`` (counters), ``lat:<kind>`` (recent
  latencies), ``lock:<key>`` (single-flight leases: SET NX PX, token-checked release).

Byte budget: Redis' own ``maxmemory`` with ``maxmemory-policy allkeys-lru``, so Redis
evicts any key, silently. Hence there is no removal log: resolving an alias or reading a
stream entry checks, in the same Lua call, that its value still exists and deletes the alias
or entry if not (a miss), and replicas forget such rows when a lookup meets them. Losing a
bookkeeping key costs at most a reload: a new ``epoch`` makes every replica reload its
index; a lost ``seq`` is recovered from the clock and the stream's last id.

Malformed entries (a tampered stream entry, a row field that is not what `put` wrote) are
deleted where they are met and logged, and read as missing; redis-py's errors become the
store's own (`StoreUnavailable`, `RedisCommandError`).

Outages: sockets time out fast and one failed call makes every call fail at once with
`StoreUnavailable` until `Backoff` lets a retry through, so a dead Redis adds at most one
timeout to a request. Scripts need a single Redis (or a Sentinel-managed primary), not Cluster.
"""

from __future__ import annotations

import logging
import re
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..lookup import KINDS, Kind
from ..store import Changes, Cursor, Entry, FuzzyRow, StoreError, StoreUnavailable
from .backoff import Backoff

log = logging.getLogger(__name__)

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
_PHASH = struct.Struct(">Q")
_BOOKKEEPING = ("seq", "epoch", "namespaces", "stats", *(f"lat:{kind}" for kind in KINDS))

# KEYS: value, stream, seq, stats, namespaces[, alias]
# ARGV: blob, signature, width, height, alpha, phash, ttl ms, rows kept, key, alias, namespace
_PUT = """
local t = redis.call('TIME')
local seq = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if last >= seq then seq = last + 1 end
local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if tail then
  local top = tonumber(string.match(tail[1], '^(%d+)'))
  if top >= seq then seq = top + 1 end
end
local id = string.format('%.0f', seq)
redis.call('SET', KEYS[3], id)
local old = redis.call('HGET', KEYS[1], 'q')
if old then redis.call('XDEL', KEYS[2], old .. '-0') end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'b', ARGV[1], 's', ARGV[2], 'w', ARGV[3], 'h', ARGV[4], 'a', ARGV[5],
           'q', id, 'n', ARGV[11], 'r', ARGV[10])
local ttl = tonumber(ARGV[7])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  local oldest = string.format('%.0f', math.max(1, seq - ttl * 1000))
  redis.call('XADD', KEYS[2], 'MINID', '~', oldest, id .. '-0', 'p', ARGV[6], 'k', ARGV[9])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], id .. '-0', 'p', ARGV[6], 'k', ARGV[9])
end
if KEYS[6] then
  if ttl > 0 then redis.call('SET', KEYS[6], ARGV[9], 'PX', ttl) else redis.call('SET', KEYS[6], ARGV[9]) end
  redis.call('HINCRBY', KEYS[4], 'aliased', 1)
end
redis.call('HINCRBY', KEYS[4], 'puts', 1)
redis.call('SADD', KEYS[5], ARGV[11])
return id
"""

# KEYS: stream; ARGV: first id (or '-'), count. Seqs as text and pHashes as 8-byte words,
# each joined into one string: a replica parses 10k rows in two numpy calls. An entry that is
# not what _PUT writes (id <seq>-0, fields p = 8 bytes and k) is deleted and counted.
# Returns {seqs, hashes, entries read, entries dropped, last id read}.
_ROWS_AFTER = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local seqs, hashes, dropped, last = {}, {}, 0, ''
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  last = id
  local seq = string.match(id, '^(%d+)%-0$')
  if seq and #seq <= 18 and #fields == 4 and fields[1] == 'p' and #fields[2] == 8 and fields[3] == 'k' then
    seqs[#seqs + 1] = seq
    hashes[#hashes + 1] = fields[2]
  else
    redis.call('XDEL', KEYS[1], id)
    dropped = dropped + 1
  end
end
return {table.concat(seqs, ' '), table.concat(hashes), #entries, dropped, last}
"""

# KEYS: alias; ARGV: prefix. The value key, or nil (and the alias goes) if the value is gone.
_RESOLVE = """
local key = redis.call('GET', KEYS[1])
if not key then return false end
if redis.call('EXISTS', ARGV[1] .. key) == 1 then return key end
redis.call('DEL', KEYS[1])
return false
"""

# KEYS: stream; ARGV: entry id, prefix. The row, or nil (and the entry goes) if its value is
# gone or the entry is not what _PUT writes.
_ROW = """
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not entry then return false end
local fields = entry[2]
if #fields ~= 4 or fields[3] ~= 'k' then
  redis.call('XDEL', KEYS[1], ARGV[1])
  return false
end
local key = fields[4]
local row = redis.call('HMGET', ARGV[2] .. key, 's', 'w', 'h', 'a', 'q')
if row[1] and row[5] and row[5] .. '-0' == ARGV[1] then return {key, row[1], row[2], row[3], row[4]} end
redis.call('XDEL', KEYS[1], ARGV[1])
return false
"""

# KEYS: value; ARGV: prefix, key. The value, its stream entry and its alias.
_DISCARD = """
local row = redis.call('HMGET', KEYS[1], 'q', 'n', 'r')
redis.call('DEL', KEYS[1])
if row[1] then redis.call('XDEL', ARGV[1] .. 'x:' .. row[2], row[1] .. '-0') end
if row[3] and row[3] ~= '' and redis.call('GET', ARGV[1] .. row[3]) == ARGV[2] then
  redis.call('DEL', ARGV[1] .. row[3])
end
return 1
"""

# KEYS: epoch; ARGV: a fresh epoch, used only if there is none (new, flushed or restarted server).
_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

# KEYS: lock; ARGV: owner[, ttl ms]. Only the owner may extend or release its lease.
_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


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
        script = self._client.register_script
        self._put, self._resolve, self._row = script(_PUT), script(_RESOLVE), script(_ROW)
        self._discard, self._epoch, self._rows_after = script(_DISCARD), script(_EPOCH), script(_ROWS_AFTER)
        self._refresh, self._unlock = script(_REFRESH), script(_UNLOCK)

    # -- exact tier ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        with self._call():
            return self._client.hget(self._k(key), "b")

    def resolve(self, alias: str) -> str | None:
        with self._call():
            key = self._resolve(keys=[self._k(alias)], args=[self._prefix])
        if key is None:
            return None
        try:
            return key.decode("ascii")
        except UnicodeDecodeError:  # not a key `put` wrote: the alias goes
            log.warning("result cache: dropping an alias to a malformed key %r", key[:80])
            with self._call():
                self._client.delete(self._k(alias))
            return None

    def put(self, entry: Entry) -> None:
        keys = [
            self._k(entry.key),
            self._stream(entry.namespace),
            *map(self._k, ("seq", "stats", "namespaces")),
        ]
        if entry.alias is not None:
            keys.append(self._k(entry.alias))
        ttl_ms = max(1, round(entry.expire * 1000)) if entry.expire else 0
        args: list[bytes | str | int] = [
            entry.blob,
            entry.signature,
            entry.width,
            entry.height,
            int(entry.has_alpha),
            _PHASH.pack(entry.phash),
            ttl_ms,
            ROWS_KEPT,
            entry.key,
            entry.alias or "",
            entry.namespace,
        ]
        with self._call():
            self._put(keys=keys, args=args)

    def discard(self, key: str) -> None:
        with self._call():
            self._discard(keys=[self._k(key)], args=[self._prefix, key])

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
            epoch = int(self._epoch(keys=[self._k("epoch")], args=[secrets.randbits(62)]))
        return Changes((epoch, 0), [], reset=cursor is None or cursor[0] != epoch)

    # -- locks ----------------------------------------------------------------------------

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._call():
            return bool(self._client.set(self._k(f"lock:{key}"), owner, nx=True, px=_ms(ttl)))

    def refresh_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._call():
            return self._refresh(keys=[self._k(f"lock:{key}")], args=[owner, _ms(ttl)]) == 1

    def unlock(self, key: str, owner: str) -> None:
        with self._call():
            self._unlock(keys=[self._k(f"lock:{key}")], args=[owner])

    # -- counters -------------------------------------------------------------------------

    def record(self, kind: Kind, ms: float) -> None:
        stats, recent = self._k("stats"), self._k(f"lat:{kind}")
        with self._call():
            pipe = self._client.pipeline(transaction=False)
            pipe.hincrby(stats, f"{kind}:n", 1).hincrbyfloat(stats, f"{kind}:ms", ms)
            pipe.lpush(recent, repr(ms)).ltrim(recent, 0, LATENCY_WINDOW - 1)
            pipe.execute()

    def counters(self) -> dict[str, tuple[int, float]]:
        """Per-kind counts, plus "evictions": keys Redis evicted or expired since `clear`."""
        with self._call():
            pipe = self._client.pipeline(transaction=False)
            raw, info = pipe.hgetall(self._k("stats")).info("stats").execute()
        stats = {name.decode(): float(value) for name, value in raw.items()}
        found = {
            name[:-2]: (int(n), stats.get(name[:-2] + ":ms", 0.0))
            for name, n in stats.items()
            if name.endswith(":n")
        }
        dropped = int(info.get("evicted_keys", 0)) + int(info.get("expired_keys", 0))
        since = stats.get("dropped_at_clear", 0)
        found["evictions"] = (int(dropped - since if dropped >= since else dropped), 0.0)
        return found

    def latencies(self) -> dict[str, list[float]]:
        with self._call():
            pipe = self._client.pipeline(transaction=False)
            for kind in KINDS:
                pipe.lrange(self._k(f"lat:{kind}"), 0, -1)
            lists = pipe.execute()
        found = zip(KINDS, lists, strict=True)
        return {kind: [float(ms) for ms in values] for kind, values in found if values}

    def usage(self) -> tuple[int, int]:
        """(results, bytes Redis uses). Redis evicts silently, so results are estimated
        from its key count: every key but a few bookkeeping ones and the leases of
        computations in flight is a value or an alias."""
        with self._call():
            pipe = self._client.pipeline(transaction=False)
            pipe.dbsize().info("memory").hmget(self._k("stats"), "puts", "aliased")
            pipe.exists(*map(self._k, _BOOKKEEPING)).scard(self._k("namespaces"))
            keys, memory, (puts, aliased), bookkeeping, streams = pipe.execute()
        values = max(0, keys - bookkeeping - streams)
        puts, aliased = int(puts or 0), int(aliased or 0)
        per_entry = 1 + aliased / puts if puts else 1
        return min(puts, round(values / per_entry)), int(memory["used_memory"])

    # -- housekeeping ---------------------------------------------------------------------

    def expire(self) -> None:
        """Nothing to do: Redis expires keys itself and every put trims its stream by age."""

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
        """What is wrong with the server's memory settings for a cache, if anything."""
        with self._call():
            memory = self._client.info("memory")
        limit, policy = int(memory.get("maxmemory", 0)), str(memory.get("maxmemory_policy", ""))
        if limit and policy in ("allkeys-lru", "allkeys-lfu"):
            return None
        return (
            f"Redis at {self.where} has maxmemory={limit} and maxmemory-policy={policy}: set a maxmemory "
            "and allkeys-lru, or the cache grows until Redis refuses writes."
        )

    # -- helpers --------------------------------------------------------------------------

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
