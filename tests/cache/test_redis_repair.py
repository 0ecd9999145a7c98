"""A key of the Redis store's own that holds the wrong type (or an epoch that is not a number,
a lease that never expires) is dropped where it is met, logged once, and the cache works on
at once: no such key can switch the near-duplicate tier, or anything else, off for good."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from PIL import Image

from cache_store import Fingerprint, ResultCache
from cache_store.result_cache import namespace_id
from tests.support.cache import reencode, stored_print, synthetic_fingerprint, value_for, value_matches
from tests.support.redis_server import RedisServer, check_redis

pytestmark = pytest.mark.redis

NS = "ns"
NSID = namespace_id(NS)
PHOTO_RAW = "ab" * 32
NEW = synthetic_fingerprint(5)


def photo_keys(fp: Fingerprint) -> dict[str, str]:
    return {"value": f"v:{NSID}:{fp.pixel_sha}", "alias": f"r:{NSID}:{PHOTO_RAW}"}


#: name -> (the key, relative to the prefix, given the photo's keys; how to plant it)
PLANTED: dict[str, tuple[Callable[[dict[str, str]], str], Callable[[redis.Redis, str], object]]] = {
    "epoch_hash": (lambda _: "epoch", lambda db, key: db.hset(key, "a", "1")),
    "epoch_text": (lambda _: "epoch", lambda db, key: db.set(key, "not a number")),
    "seq_list": (lambda _: "seq", lambda db, key: db.rpush(key, "1")),
    "namespaces_text": (lambda _: "namespaces", lambda db, key: db.set(key, "x")),
    "stats_list": (lambda _: "stats", lambda db, key: db.rpush(key, "1")),
    "latencies_hash": (lambda _: "lat:fuzzy", lambda db, key: db.hset(key, "a", "1")),
    "protected_text": (lambda _: "hot", lambda db, key: db.set(key, "x")),
    "pinned_text": (lambda _: "pin", lambda db, key: db.set(key, "x")),
    "deadlines_text": (lambda _: "due", lambda db, key: db.set(key, "x")),
    "segment_bytes_list": (lambda _: "seg", lambda db, key: db.rpush(key, "1")),
    "stream_text": (lambda _: f"x:{NSID}", lambda db, key: db.set(key, "x")),
    "alias_hash": (lambda keys: keys["alias"], lambda db, key: db.hset(key, "a", "1")),
    "value_text": (lambda keys: keys["value"], lambda db, key: db.set(key, "x")),
    "lease_forever": (lambda _: f"lock:{NSID}:{NEW.pixel_sha}", lambda db, key: db.set(key, "someone")),
}


@pytest.mark.timeout(60)  # a lease that never expired made get_or_compute wait for good
@pytest.mark.parametrize("planted", PLANTED)
def test_a_wrong_key_is_dropped_once_and_the_cache_works_on(
    planted: str, redis_server: RedisServer, redis_url: str, fitted: dict[str, Image.Image], caplog
) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image, raw_sha=PHOTO_RAW)
    variant = Fingerprint.of(reencode(image, "JPEG", quality=70))
    db = redis_server.client()
    name_of, plant = PLANTED[planted]
    key = "rc:" + name_of(photo_keys(fp))
    with ResultCache(redis_url) as cache, caplog.at_level(logging.WARNING, logger="cache_store"):
        cache.put(NS, fp, value_for(fp, 20_000), {})
        cache.record("exact", 1.0)
        assert cache.lookup(NS, variant).kind == "fuzzy"  # this replica's index is loaded
        db.delete(key)
        plant(db, key)

        cache.lookup_raw(NS, PHOTO_RAW)  # reads first (a miss, if they met the key)...
        cache.stats()
        cache.put(NS, fp, value_for(fp, 20_000), {})  # ...then the photo stored again, as a miss would
        for _ in range(3):  # the near-duplicate tier answers, at once and from then on
            hit = cache.lookup(NS, variant)
            assert hit is not None and hit.kind == "fuzzy" and value_matches(fp.pixel_sha, hit.value)
        assert cache.lookup_raw(NS, PHOTO_RAW).kind == "exact"
        assert cache.get_or_compute(NS, NEW, lambda: (value_for(NEW, 20_000), {})).kind == "miss"
        assert cache.lookup_raw(NS, NEW.raw_sha).kind == "exact"
        cache.record("fuzzy", 2.0)
        stats = cache.stats()
        assert stats.fuzzy_hits == 1 and stats.entries == 2 and stats.p95_ms["fuzzy"] == 2.0
        assert cache.healthy and "degraded" not in cache.status_message
    mentions = [record for record in caplog.records if key in record.getMessage()]
    assert len(mentions) == 1, [record.getMessage() for record in caplog.records]
    if planted == "value_text":  # the planted string replaced the hash that named the photo's old
        return  # row, which stays (and cannot be served) until a lookup meets it and drops it
    assert check_redis(db) == {"values": 2, "rows": 2, "aliases": 2}
