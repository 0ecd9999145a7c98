"""What the byte budget gives up first, on both backends (`cache_store.segments`): a flood of
one-off misses from one client churns among itself and never takes pinned entries or entries
that another client was served again; protected and pinned entries are bounded shares of the
budget; pinned entries do not expire, and protected ones still do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cache_store import Fingerprint, ResultCache
from cache_store.segments import PINNED_SHARE, PROTECTED_SHARE
from tests.support.cache import check, synthetic_fingerprint, value_for, value_matches

NS = "ns"
BUDGET = 4 << 20
SIZE = 100_000

Budgeted = Callable[..., tuple[ResultCache, int]]


@pytest.fixture
def budgeted(location: Path | str, request: pytest.FixtureRequest) -> Iterator[Budgeted]:
    """make(**options) -> (a cache with a BUDGET-byte budget at `location`, the bytes its
    shares are taken of): the directory's size limit, or Redis' maxmemory (its memory in use
    now plus BUDGET, with volatile-lru, as the cache asks operators to set)."""
    server = None if isinstance(location, Path) else request.getfixturevalue("redis_server")

    def make(**options: object) -> tuple[ResultCache, int]:
        if server is None:
            return ResultCache(location, size_limit=BUDGET, **options), BUDGET
        client = server.client()
        client.config_set("maxmemory-policy", "volatile-lru")
        total = client.info("memory")["used_memory"] + BUDGET
        client.config_set("maxmemory", total)
        return ResultCache(location, **options), total

    yield make
    if server is not None:
        server.client().config_set("maxmemory", 0)
        server.client().config_set("maxmemory-policy", "noeviction")


def stored(cache: ResultCache, seed: int, **options: object) -> Fingerprint:
    fp = synthetic_fingerprint(seed)
    cache.put(NS, fp, value_for(fp, SIZE), {"seed": seed}, **options)
    return fp


def kept(cache: ResultCache, fp: Fingerprint) -> bool:
    """Whether `fp`'s entry is still served whole (asked by a client of its own, so that
    asking protects nothing)."""
    hit = cache.lookup_raw(NS, fp.raw_sha, client=f"checker-{fp.raw_sha}")
    return hit is not None and value_matches(fp.pixel_sha, hit.value)


def flood(cache: ResultCache, first_seed: int, total_bytes: int) -> list[Fingerprint]:
    """Unique misses from one client, as the service runs them: look up, compute, store."""
    prints = [synthetic_fingerprint(seed) for seed in range(first_seed, first_seed + total_bytes // SIZE)]
    for fp in prints:
        result = cache.get_or_compute(NS, fp, lambda fp=fp: (value_for(fp, SIZE), {}), client="flooder")
        assert result.kind == "miss"
    return prints


def test_a_flood_of_one_off_misses_keeps_pinned_entries_and_those_others_came_back_for(
    budgeted: Budgeted, location: Path | str
) -> None:
    cache, _ = budgeted()
    with cache:
        examples = [stored(cache, seed, pinned=True) for seed in range(3)]
        popular = [stored(cache, seed, client=f"visitor-{seed}") for seed in range(10, 16)]
        own = [stored(cache, seed, client="flooder") for seed in range(20, 26)]
        untouched = [stored(cache, seed, client=f"visitor-{seed}") for seed in range(30, 36)]
        for fp in popular:
            assert cache.lookup_raw(NS, fp.raw_sha, client="someone else") is not None
        for fp in own:  # the flooder coming back for its own uploads earns them nothing
            assert cache.lookup_raw(NS, fp.raw_sha, client="flooder") is not None
        flooded = flood(cache, 1000, 6 * BUDGET)
        assert all(kept(cache, fp) for fp in examples + popular)
        assert not any(kept(cache, fp) for fp in own + untouched)
        for fp in own + untouched + flooded:  # Redis evicts silently: rows of lost values go when met
            cache.lookup(NS, fp, client="flooder")
    counts = check(location)  # every alias and row still points at its own value
    assert len(examples + popular) < counts["values"] <= BUDGET // SIZE


def test_the_protected_share_is_bounded_and_keeps_the_most_recently_served(budgeted: Budgeted) -> None:
    cache, total = budgeted()
    with cache:
        prints = [stored(cache, seed, client="uploader") for seed in range(30)]  # ~3 MB
        # served again, oldest first (Redis may have evicted a few before): over the share
        served = [fp for fp in prints if cache.lookup_raw(NS, fp.raw_sha, client="someone else")]
        assert len(served) * SIZE > PROTECTED_SHARE * total
        flood(cache, 1000, 6 * BUDGET)
        survivors = [kept(cache, fp) for fp in served]
    count = sum(survivors)
    assert survivors == [False] * (len(served) - count) + [True] * count  # the most recent ones
    assert 0.5 * PROTECTED_SHARE * total <= count * SIZE <= PROTECTED_SHARE * total


def test_pins_are_bounded_never_expire_and_the_oldest_lose_their_pin(budgeted: Budgeted) -> None:
    cache, total = budgeted(ttl=1.5)
    with cache:
        pins = [stored(cache, seed, pinned=True) for seed in range(8)]  # ~800 KB, over the share
        plain = stored(cache, 100)
        time.sleep(2.0)  # pins unpinned to make room expire 1.5 s after, pinned ones never
        survivors = [kept(cache, fp) for fp in pins]
        assert not kept(cache, plain)
    count = sum(survivors)
    assert survivors == [False] * (len(pins) - count) + [True] * count  # the oldest lost their pin
    assert 0.5 * PINNED_SHARE * total <= count * SIZE <= PINNED_SHARE * total


def test_a_protected_entry_still_expires_after_its_ttl(location: Path | str) -> None:
    """Protection is against the budget only: Redis no longer expires a protected entry (it
    must not evict it), so the sweep does, unasked."""
    with ResultCache(location, ttl=1.0, sweep_interval=0.3) as cache:
        fp = stored(cache, 1, client="uploader")
        assert cache.lookup_raw(NS, fp.raw_sha, client="someone else") is not None
        deadline = time.monotonic() + 5
        while check(location)["values"]:
            assert time.monotonic() < deadline, "a protected entry outlived its TTL"
            time.sleep(0.1)
    assert check(location) == {"values": 0, "rows": 0, "aliases": 0}


def test_pinning_an_entry_found_keeps_it_through_a_flood(budgeted: Budgeted) -> None:
    """The warm-up finds examples cached by an earlier run and pins them where it finds them."""
    cache, _ = budgeted()
    with cache:
        example = stored(cache, 1)
        assert cache.lookup_raw(NS, example.raw_sha, client="flooder", pinned=True) is not None
        stored(cache, 1, client="flooder")  # stored again (regenerated): it stays pinned
        flood(cache, 1000, 6 * BUDGET)
        assert kept(cache, example)
