"""Several processes on one directory see each other's entries and counts without restarting."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from PIL import Image

from cache_store import KINDS, Fingerprint, ResultCache
from tests.support.cache import indexed_rows, reencode, stored_print, synthetic_fingerprint, value_for

NS = "ns"
FORK = multiprocessing.get_context("fork")


def in_child(target, *args) -> None:
    child = FORK.Process(target=target, args=args)
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0


def _put_photo(directory: Path, image: Image.Image) -> None:
    with ResultCache(directory) as cache:
        fp = stored_print(image)
        cache.put(NS, fp, b"from another process", {"by": "child"}, client="visitor")


def _flood(directory: Path) -> None:
    with ResultCache(directory, size_limit=600_000) as cache:
        for seed in range(20):
            fp = synthetic_fingerprint(seed)
            cache.put(NS, fp, value_for(fp, 100_000), {})


def test_entries_added_or_evicted_elsewhere_are_seen_at_the_next_lookup(tmp_path: Path, fitted) -> None:
    image = next(iter(fitted.values()))
    variant = Fingerprint.of(reencode(image, "JPEG", quality=50))
    with ResultCache(tmp_path) as cache:
        assert cache.lookup(NS, variant) is None  # loads this namespace's (empty) index
        in_child(_put_photo, tmp_path, image)
        hit = cache.lookup(NS, variant, client="visitor")  # its owner's: earns it no protection
        assert hit is not None and hit.kind == "fuzzy" and hit.meta == {"by": "child"}
        in_child(_flood, tmp_path)  # its size limit evicts the photo and most of the flood
        assert cache.lookup(NS, variant) is None
        assert indexed_rows(cache, NS) == cache.stats().entries < 20


def _mixed_traffic(directory: Path | str, worker: int) -> None:
    """Three requests (a miss, two exact hits) and a lookup that misses, each request
    recorded once by its caller, as the service does."""
    with ResultCache(directory) as cache:
        fp = synthetic_fingerprint(100 + worker)
        requests = [
            cache.get_or_compute(NS, fp, lambda: (value_for(fp, 1_000), {})),
            cache.lookup_raw(NS, fp.raw_sha),
            cache.lookup(NS, fp),
        ]
        assert cache.lookup(NS, synthetic_fingerprint(500 + worker)) is None  # part of a request
        for found in requests:
            cache.record(found.kind, found.latency_ms + 1.0)


def test_stats_add_up_across_processes(location: Path | str) -> None:
    for worker in range(2):
        in_child(_mixed_traffic, location, worker)
    with ResultCache(location) as cache:
        stats = cache.stats()
    assert {
        key: getattr(stats, key)
        for key in ("lookups", "exact_hits", "fuzzy_hits", "coalesced", "misses", "entries")
    } == {
        "lookups": 6,
        "exact_hits": 4,
        "fuzzy_hits": 0,
        "coalesced": 0,
        "misses": 2,
        "entries": 2,
    }
    assert {kind: stats.count(kind) for kind in KINDS} == {"exact": 4, "fuzzy": 0, "coalesced": 0, "miss": 2}
    assert stats.hit_rate == 4 / 6 and stats.bytes > 2_000
    assert set(stats.mean_ms) == set(stats.p95_ms) == {"exact", "miss"}
    assert all(value > 0 for value in stats.p95_ms.values())
