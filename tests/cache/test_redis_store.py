"""What only the Redis backend does: raw-bytes values with Redis expiry, eviction by
maxmemory + allkeys-lru with no row left pointing at a missing value, token-checked leases,
and replicas that see each other's entries, clears and a flushed server at once.

The behaviour both backends share runs in the parametrized tests next to this file.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import redis
from PIL import Image

from cache_store import Fingerprint, ResultCache
from cache_store.backends.redis import RedisStore
from cache_store.envelope import MAGIC
from tests.support.cache import (
    indexed_rows,
    reencode,
    stored_print,
    synthetic_fingerprint,
    value_for,
    value_matches,
)
from tests.support.redis_server import RedisServer, check_redis

pytestmark = pytest.mark.redis

NS = "ns"


@pytest.fixture
def db(redis_server: RedisServer, redis_url: str) -> redis.Redis:
    return redis_server.client()


def keys(db: redis.Redis, pattern: str) -> list[bytes]:
    return sorted(db.scan_iter(match=f"rc:{pattern}"))


def test_values_are_raw_bytes_that_expire_through_redis(redis_url: str, db: redis.Redis) -> None:
    fp, forever = synthetic_fingerprint(1), synthetic_fingerprint(2)
    with ResultCache(redis_url, ttl=60) as cache:
        cache.put(NS, fp, b"styled png", {"w": 1})
    with ResultCache(redis_url, ttl=0) as cache:
        cache.put(NS, forever, b"kept", {})
    value, kept = (
        next(k for k in keys(db, "v:*") if k.endswith(f.pixel_sha.encode())) for f in (fp, forever)
    )
    alias, kept_alias = (
        next(k for k in keys(db, "r:*") if k.endswith(f.raw_sha.encode())) for f in (fp, forever)
    )
    stored = db.hget(value, "b")
    assert stored.startswith(MAGIC) and stored.endswith(b"styled png")  # an envelope, not a pickle
    assert 0 < db.pttl(value) <= 60_000 and 0 < db.pttl(alias) <= 60_000
    # TTL 0: kept until evicted, which volatile-lru does only to keys with an expiry: ten years
    assert db.pttl(kept) > 9 * 365 * 86400_000 and db.pttl(kept_alias) > 9 * 365 * 86400_000


def test_a_planted_pickle_is_never_loaded_and_is_dropped(
    redis_url: str, db: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    fp = synthetic_fingerprint(3)
    with ResultCache(redis_url) as cache:
        cache.put(NS, fp, b"styled", {})
        (value,) = keys(db, "v:*")
        db.hset(value, "b", pickle.dumps(_Planted(marker)))  # what anyone with access to Redis could do
        assert cache.lookup_raw(NS, fp.raw_sha) is None and cache.lookup(NS, fp) is None
        assert not marker.exists()
    assert check_redis(db) == {"values": 0, "rows": 0, "aliases": 0}


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_evicted_value_is_a_miss_and_its_alias_and_row_go(redis_url: str, db: redis.Redis, fitted) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image, raw_sha="11" * 32)
    variant = Fingerprint.of(reencode(image, "WEBP"))
    with ResultCache(redis_url) as cache, ResultCache(redis_url) as other:
        cache.put(NS, fp, value_for(fp, 10_000), {})
        assert other.lookup(NS, variant).kind == "fuzzy"  # the other replica's index holds the row
        db.delete(*keys(db, "v:*"))  # what allkeys-lru does: the value goes, nothing else
        assert cache.lookup_raw(NS, fp.raw_sha) is None
        assert other.lookup(NS, variant) is None
        assert indexed_rows(other, NS) == 0
    assert check_redis(db) == {"values": 0, "rows": 0, "aliases": 0}


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
def test_maxmemory_evicts_and_nothing_points_at_a_lost_value(
    redis_url: str, db: redis.Redis, policy: str
) -> None:
    """Redis evicts probation entries (volatile-lru, the policy the cache asks for) or any
    key, the stream of rows included (allkeys-lru, which the cache warns about); whatever it
    took, no lookup serves a wrong value, and once met, no alias or row is left pointing at a
    lost value."""
    prints = [synthetic_fingerprint(seed) for seed in range(60)]
    db.config_set("maxmemory-policy", policy)
    db.config_set("maxmemory", 4 << 20)
    try:
        with ResultCache(redis_url) as cache:
            assert ("Warning" in cache.status_message) == (policy != "volatile-lru")
            for fp in prints:
                cache.put(NS, fp, value_for(fp, 100_000), {})
            # Redis evicts once over maxmemory, so it may stand a few bytes above it meanwhile
            assert db.info("memory")["used_memory"] <= (4 << 20) * 1.01
            db.config_set("maxmemory", 0)  # evictions stop, so what is left can be checked
            found = [cache.lookup(NS, fp) for fp in prints]  # misses drop what they meet
            assert all(
                hit is None or value_matches(fp.pixel_sha, hit.value)
                for hit, fp in zip(found, prints, strict=True)
            )
            kept = sum(hit is not None for hit in found)
            assert 0 < kept < len(prints) and cache.stats().evictions > 0
            for fp in prints:
                cache.lookup_raw(NS, fp.raw_sha)
            counts = check_redis(db)
            assert counts["values"] == kept and counts["aliases"] <= kept
            assert indexed_rows(cache, NS) == counts["rows"] <= kept
    finally:
        db.config_set("maxmemory", 0)
        db.config_set("maxmemory-policy", "noeviction")


def test_a_cache_without_a_memory_budget_says_so(redis_url: str) -> None:
    with ResultCache(redis_url) as cache:  # the test server runs without maxmemory
        assert cache.healthy and "maxmemory" in cache.status_message


def test_leases_are_released_and_extended_only_by_their_owner(redis_url: str) -> None:
    store = RedisStore(redis_url)
    try:
        assert store.try_lock("k", "a", 0.3) and not store.try_lock("k", "b", 0.3)
        store.unlock("k", "b")
        assert not store.refresh_lock("k", "b", 5) and not store.try_lock("k", "b", 0.3)
        assert store.refresh_lock("k", "a", 0.3)
        time.sleep(0.4)  # a holder that stops beating loses the lease
        assert store.try_lock("k", "b", 5)
        store.unlock("k", "b")
        assert store.try_lock("k", "c", 5)
    finally:
        store.close()


def test_clear_and_a_flushed_server_empty_every_replica(
    redis_url: str, db: redis.Redis, fitted: dict[str, Image.Image]
) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image)
    variant = Fingerprint.of(reencode(image, "JPEG", quality=60))
    with ResultCache(redis_url) as first, ResultCache(redis_url) as second:
        first.put(NS, fp, value_for(fp, 50_000), {})
        assert second.lookup(NS, variant).kind == "fuzzy"
        second.record("fuzzy", 3.0)
        assert first.stats().lookups == 1
        store = RedisStore(redis_url)
        assert store.try_lock("in flight", "owner", 60)
        first.clear()
        assert not store.try_lock("in flight", "other", 60)  # a computation's lease survives
        store.close()
        assert second.lookup(NS, variant) is None and indexed_rows(second, NS) == 0
        assert first.stats().lookups == 0 and first.stats().entries == 0
        second.put(NS, fp, value_for(fp, 100), {})
        assert first.lookup(NS, variant).kind == "fuzzy"
        db.flushdb()  # an operator's FLUSHDB, or a restart without persistence
        assert first.lookup(NS, variant) is None and indexed_rows(first, NS) == 0
        first.put(NS, fp, value_for(fp, 100), {})
        assert second.lookup(NS, variant).kind == "fuzzy"
    assert check_redis(db) == {"values": 1, "rows": 1, "aliases": 0}
