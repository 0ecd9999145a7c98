"""What a long-running app must not leak or outgrow: open files, disk beyond the byte
budget, expired results left on disk, and a deleted cache directory still written to."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import pytest

from cache_store import ResultCache
from cache_store.backends import disk
from tests.support.cache import (
    bursts_of_long_misses,
    check_store,
    connect,
    disk_usage,
    open_files,
    synthetic_fingerprint,
    value_files,
    value_for,
)

NS = "ns"
linux_only = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")


@linux_only
def test_open_files_stay_flat_over_bursts_of_long_misses(tmp_path: Path) -> None:
    """Each long miss beats its lease from a thread of its own, and short-lived threads read
    the statistics (as Gradio's workers do): none of them may leave a connection open."""
    with ResultCache(tmp_path, lock_ttl=0.3) as cache:  # a heartbeat every 0.1 s
        counts = bursts_of_long_misses(cache, tmp_path, namespace=NS)
        assert cache.stats().entries == 24
    # SQLite keeps a closed connection's descriptor for reuse while others hold locks on the
    # file, so the first burst sets a plateau; later bursts must not raise it.
    assert counts[-1] <= counts[0] + 2, counts


def test_the_directory_stays_within_its_byte_budget(tmp_path: Path) -> None:
    """`--cache-size 2MB` and 40 results of a realistic size: everything in the directory
    (SQLite file, write-ahead log, shared memory, value files and their folders) counts."""
    budget = 2 << 20
    prints = [synthetic_fingerprint(seed) for seed in range(40)]
    worst = 0
    with ResultCache(tmp_path, size_limit=budget) as cache:
        for i, fp in enumerate(prints):
            size = 260_000 if i % 4 else 20_000  # 768 px results as files, small ones inline
            cache.put(NS, fp, value_for(fp, size), {"i": i})
            for earlier in prints[max(0, i - 3) : i]:  # hits write to the log too
                cache.lookup_raw(NS, earlier.raw_sha)
            worst = max(worst, disk_usage(tmp_path))
        stats = cache.stats()
        assert stats.entries >= 4  # the budget is used, not emptied
        assert stats.bytes >= 0.9 * disk_usage(tmp_path)  # the cache panel tells the truth
    assert worst <= 1.1 * budget, f"{worst / 2**20:.2f} MB on disk for a 2 MB budget"
    check_store(tmp_path)


def test_a_lookup_that_meets_an_expired_entry_deletes_its_file(tmp_path: Path) -> None:
    fp = synthetic_fingerprint(1)
    with ResultCache(tmp_path, ttl=0.5, sweep_interval=3600) as cache:
        cache.put(NS, fp, value_for(fp, 100_000), {})
        assert len(value_files(tmp_path)) == 1
        time.sleep(0.7)
        assert cache.lookup_raw(NS, fp.raw_sha) is None
        assert not value_files(tmp_path)
        with connect(tmp_path) as con:
            assert con.execute("SELECT count(*) FROM Cache").fetchone() == (0,)


def test_expired_entries_leave_the_disk_within_one_sweep_interval(tmp_path: Path) -> None:
    """Nobody writes or looks anything up: the housekeeping sweep alone deletes them."""
    ttl, interval = 1.0, 0.5
    with ResultCache(tmp_path, ttl=ttl, sweep_interval=interval):  # only sweeps
        writer = ResultCache(tmp_path, ttl=ttl, sweep_interval=3600)
        for seed in range(3):
            fp = synthetic_fingerprint(seed)
            writer.put(NS, fp, value_for(fp, 100_000), {})
        writer.close()
        written = time.monotonic()
        assert len(value_files(tmp_path)) == 3
        while value_files(tmp_path):
            assert time.monotonic() - written < ttl + interval + 2.0, "expired files outlived the sweep"
            time.sleep(0.05)
    assert check_store(tmp_path) == {"values": 0, "rows": 0, "aliases": 0}


@linux_only
def test_a_deleted_cache_directory_is_reopened_not_written_into(tmp_path: Path, caplog, monkeypatch) -> None:
    directory = tmp_path / "cache"
    before, after = synthetic_fingerprint(1), synthetic_fingerprint(2)
    monkeypatch.setattr(disk, "ORPHAN_GRACE_S", 0.0)  # what a write into the deleted store left
    with (
        ResultCache(directory, sweep_interval=0.2) as cache,
        caplog.at_level(logging.WARNING, logger="cache_store"),
    ):
        cache.put(NS, before, value_for(before, 100_000), {})
        cache.lookup_raw(NS, before.raw_sha)
        worker = threading.Thread(target=cache.lookup_raw, args=(NS, before.raw_sha))
        worker.start()  # a thread that stays (like a pool's) and holds connections
        worker.join()
        shutil.rmtree(directory)  # an operator's `make clean-cache` while the app runs
        computed = cache.get_or_compute(NS, after, lambda: (value_for(after, 100_000), {}))
        assert computed.kind == "miss"  # requests never fail meanwhile
        deadline = time.monotonic() + 10
        while not (directory / "cache.db").exists():
            assert time.monotonic() < deadline, "the cache never reopened its directory"
            cache.lookup_raw(NS, before.raw_sha)
            time.sleep(0.05)
        assert "deleted or replaced" in caplog.text
        assert cache.get_or_compute(NS, after, lambda: (value_for(after, 100_000), {})).kind in (
            "miss",
            "exact",
        )
        assert cache.lookup_raw(NS, after.raw_sha).kind == "exact"
        assert not [name for name in open_files(directory) if name.endswith("(deleted)")]
        deadline = time.monotonic() + 10
        while len(value_files(directory)) > 1:  # the sweep takes the orphan
            assert time.monotonic() < deadline, "a value file written meanwhile was never swept"
            time.sleep(0.05)
    assert check_store(directory)["values"] == 1
