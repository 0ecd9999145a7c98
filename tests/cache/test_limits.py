"""Size limit, TTL and clear(): the fuzzy index and the side tables follow the values."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from cache_store import Fingerprint, ResultCache
from tests.support.cache import (
    check,
    check_store,
    connect,
    indexed_rows,
    reencode,
    stored_print,
    synthetic_fingerprint,
    value_for,
)

NS = "ns"


def test_size_limit_evicts_least_recently_used_and_the_index_follows(tmp_path: Path) -> None:
    limit = 1_000_000
    prints = [synthetic_fingerprint(seed) for seed in range(40)]
    with ResultCache(tmp_path, size_limit=limit) as cache:
        for fp in prints:
            assert cache.lookup(NS, prints[0]) is not None or fp is prints[0]  # keep it recently used
            cache.put(NS, fp, value_for(fp, 100_000), {})
        stats = cache.stats()
        assert stats.evictions > 0 and stats.entries < len(prints) and stats.bytes < 1.3 * limit
        assert cache.lookup(NS, prints[0]) is not None
        assert cache.lookup(NS, prints[1]) is None
        assert indexed_rows(cache, NS) == stats.entries
    assert check_store(tmp_path) == {
        "values": stats.entries,
        "rows": stats.entries,
        "aliases": stats.entries,
    }


def test_expired_entries_miss_and_leave_no_rows(location: Path | str, fitted: dict[str, Image.Image]) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image, raw_sha="00" * 32)
    variant = Fingerprint.of(reencode(image, "JPEG", quality=70))
    with ResultCache(location, ttl=1) as cache:
        cache.put(NS, fp, value_for(fp, 100_000), {})
        assert cache.lookup(NS, variant).kind == "fuzzy"
        time.sleep(1.3)
        assert cache.lookup(NS, variant) is None
        assert cache.lookup_raw(NS, fp.raw_sha) is None and cache.lookup(NS, fp) is None
        assert indexed_rows(cache, NS) == 0
    ResultCache(location, ttl=1).close()  # opening sweeps whatever expired
    assert check(location) == {"values": 0, "rows": 0, "aliases": 0}


def test_ttl_zero_keeps_entries(tmp_path: Path) -> None:
    fp = synthetic_fingerprint(1)
    with ResultCache(tmp_path, ttl=0) as cache:
        cache.put(NS, fp, b"kept", {})
    with connect(tmp_path) as con:
        assert con.execute("SELECT expire_time FROM Cache").fetchall() == [(None,)]


def test_a_row_whose_value_file_vanished_is_a_miss_and_is_dropped(tmp_path: Path, fitted) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image, raw_sha="11" * 32)
    with ResultCache(tmp_path) as cache:
        cache.put(NS, fp, value_for(fp, 100_000), {})
        for path in tmp_path.glob("*/*/*.val"):
            path.unlink()
        assert cache.lookup(NS, Fingerprint.of(reencode(image, "WEBP"))) is None
        assert indexed_rows(cache, NS) == 0
        assert cache.lookup_raw(NS, fp.raw_sha) is None
    assert check_store(tmp_path) == {"values": 0, "rows": 0, "aliases": 0}


def test_clear_empties_every_process_view(tmp_path: Path, fitted) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image)
    variant = Fingerprint.of(reencode(image, "JPEG", quality=60))
    (tmp_path / "corrupt-20240101-000000-1").mkdir()  # an old moved-aside store
    with ResultCache(tmp_path) as first, ResultCache(tmp_path) as second:
        first.put(NS, fp, value_for(fp, 50_000), {})
        assert second.lookup(NS, variant).kind == "fuzzy"
        second.record("fuzzy", 3.0)
        assert first.stats().lookups == 1
        first.clear()
        assert second.lookup(NS, variant) is None and indexed_rows(second, NS) == 0
        assert first.stats().lookups == 0 and first.stats().entries == 0
        second.put(NS, fp, value_for(fp, 100), {})  # usable again after the wipe
        assert first.lookup(NS, variant).kind == "fuzzy"
    assert not list(tmp_path.glob("corrupt-*"))
    assert check_store(tmp_path) == {"values": 1, "rows": 1, "aliases": 0}
