"""A Redis that is down never fails a request: at start or mid-run the cache serves
uncached and says why, and it reconnects by itself once Redis is back (empty or not)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_store import Fingerprint, ResultCache
from tests.support.cache import indexed_rows, reencode, stored_print, synthetic_fingerprint, value_for
from tests.support.redis_server import RedisServer, require_redis_server

pytestmark = pytest.mark.redis

NS = "ns"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, created stopped: the test starts and stops it."""
    require_redis_server()
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def served(cache: ResultCache, seed: int) -> str:
    """One request through get_or_compute; its kind. Raises if the request fails."""
    fp = synthetic_fingerprint(seed)
    result = cache.get_or_compute(NS, fp, lambda: (value_for(fp, 2_000), {"seed": seed}))
    assert result.value == value_for(fp, 2_000)
    return result.kind


def until_healthy(cache: ResultCache) -> None:
    """Requests keep coming; the cache tries Redis again within its longest backoff."""
    deadline = time.monotonic() + 30
    while not cache.healthy:
        assert time.monotonic() < deadline, cache.status_message
        cache.lookup(NS, synthetic_fingerprint(10**6))
        time.sleep(0.05)


def test_redis_down_at_start_serves_uncached_then_connects(server: RedisServer) -> None:
    with ResultCache(server.url()) as cache:
        assert not cache.healthy and "unreachable" in cache.status_message
        assert [served(cache, 1), served(cache, 1)] == ["miss", "miss"]
        assert cache.lookup_raw(NS, synthetic_fingerprint(1).raw_sha) is None
        cache.record("miss", 5.0)  # lost, never raised
        assert cache.stats().healthy is False and cache.stats().lookups == 0
        server.start()
        until_healthy(cache)
        assert "Redis at 127.0.0.1" in cache.status_message
        assert [served(cache, 1), served(cache, 1)] == ["miss", "exact"]


def test_redis_stopped_mid_run_then_restarted_empty(server: RedisServer, fitted) -> None:
    image = next(iter(fitted.values()))
    fp, variant = stored_print(image), Fingerprint.of(reencode(image, "JPEG", quality=70))
    server.start()
    with ResultCache(server.url()) as cache:
        cache.put(NS, fp, b"before", {})
        assert cache.lookup(NS, variant).kind == "fuzzy" and served(cache, 2) == "miss"
        server.stop()
        assert cache.lookup(NS, variant) is None
        assert [served(cache, 2), served(cache, 3)] == ["miss", "miss"]
        cache.put(NS, fp, b"while down", {})  # skipped, not raised
        assert not cache.healthy and "unreachable" in cache.status_message
        server.start()  # no persistence: it comes back empty
        until_healthy(cache)
        assert cache.lookup(NS, variant) is None and indexed_rows(cache, NS) == 0
        assert [served(cache, 2), served(cache, 2)] == ["miss", "exact"]
        cache.put(NS, fp, b"after", {})
        hit = cache.lookup(NS, variant)
        assert hit.kind == "fuzzy" and hit.value == b"after"


def test_a_frozen_redis_times_out_then_is_used_again_with_its_data(server: RedisServer) -> None:
    server.start()
    with ResultCache(server.url()) as cache:
        assert served(cache, 4) == "miss"
        server.process.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            assert [served(cache, 4), served(cache, 5)] == ["miss", "miss"]
            assert not cache.healthy and "Timeout" in cache.status_message
        finally:
            server.process.send_signal(signal.SIGCONT)
        until_healthy(cache)
        assert [served(cache, 4), served(cache, 5)] == ["exact", "miss"]


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/x", "redis://127.0.0.1:port/0", "http://127.0.0.1:6379/0"]
)
def test_a_malformed_or_foreign_url_runs_uncached(url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a URL taken for a directory would show up here
    with ResultCache(url) as cache:
        assert not cache.healthy and "off" in cache.status_message
        assert served(cache, 1) == "miss" and served(cache, 1) == "miss"
    assert not list(tmp_path.iterdir())
