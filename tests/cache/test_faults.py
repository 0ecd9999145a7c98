"""A broken store never fails a request: corrupt files are moved aside, an unusable
directory runs uncached, a full disk only skips writes, and kill -9 leaves a consistent store."""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import signal
import threading
import time
from pathlib import Path

import pytest

from cache_store import ResultCache
from cache_store.backends import disk
from tests.support.cache import check_store, connect, synthetic_fingerprint, value_for, value_matches

NS = "ns"
FORK = multiprocessing.get_context("fork")


def filled(directory: Path, count: int = 30) -> None:
    with ResultCache(directory) as cache:
        for seed in range(count):
            fp = synthetic_fingerprint(seed)
            cache.put(NS, fp, value_for(fp, random.Random(seed).choice([300, 50_000])), {})


def assert_usable(cache: ResultCache) -> None:
    fp = synthetic_fingerprint(999)
    assert cache.get_or_compute(NS, fp, lambda: (value_for(fp, 100), {})).kind == "miss"
    assert cache.lookup_raw(NS, fp.raw_sha).kind == "exact"


@pytest.mark.parametrize("where", ["header", "pages"])
def test_a_corrupt_store_is_moved_aside_and_replaced(where: str, tmp_path: Path) -> None:
    filled(tmp_path)
    size = (tmp_path / "cache.db").stat().st_size
    with open(tmp_path / "cache.db", "r+b") as db:
        db.seek(0 if where == "header" else 4096)
        db.write(os.urandom(100 if where == "header" else size - 4096))
    with ResultCache(tmp_path) as cache:
        assert cache.healthy and "recovered" in cache.status_message
        assert cache.lookup(NS, synthetic_fingerprint(1)) is None
        assert_usable(cache)
    (moved,) = tmp_path.glob("corrupt-*")
    assert (moved / "cache.db").is_file()


def test_a_store_corrupted_under_a_running_cache_recovers(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    fp = synthetic_fingerprint(1)
    cache.put(NS, fp, value_for(fp, 300), {})
    for name in ("cache.db", "cache.db-wal"):
        path = tmp_path / name
        if path.exists():
            path.write_bytes(os.urandom(path.stat().st_size))
    found = []
    # a new thread opens new connections, which read the damaged file
    worker = threading.Thread(target=lambda: found.append(cache.lookup(NS, fp)))
    worker.start()
    worker.join()
    assert found == [None]
    assert cache.healthy and "recovered" in cache.status_message
    assert_usable(cache)
    cache.close()


@pytest.mark.parametrize("problem", ["parent_is_a_file", "db_is_a_folder"])
def test_an_unusable_directory_runs_uncached(problem: str, tmp_path: Path) -> None:
    if problem == "parent_is_a_file":
        (tmp_path / "file").write_text("")
        directory = tmp_path / "file" / "cache"
    else:
        directory = tmp_path
        (tmp_path / "cache.db").mkdir()
    cache = ResultCache(directory)
    assert not cache.healthy and "off" in cache.status_message
    fp = synthetic_fingerprint(1)
    calls = []
    compute = lambda: (calls.append(1), (b"styled", {"w": 1}))[1]  # noqa: E731
    for _ in range(2):
        result = cache.get_or_compute(NS, fp, compute)
        assert result.kind == "miss" and result.value == b"styled" and result.source_size == (48, 32)
    assert len(calls) == 2
    cache.put(NS, fp, b"styled", {})
    assert cache.lookup(NS, fp) is None and cache.lookup_raw(NS, fp.raw_sha) is None
    cache.record("miss", 5.0)  # counted nowhere, and never raised
    assert cache.stats().lookups == 0 and cache.stats().healthy is False
    cache.clear()
    cache.close()


def _fill_a_full_disk(directory: Path, report) -> None:
    """Every file this process writes is capped at 1 MB: writes fail as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    cache = ResultCache(directory)
    ok = 0
    for seed in range(80):
        fp = synthetic_fingerprint(seed)
        size = 2_000_000 if seed % 8 == 0 else 20_000  # files over the cap; inline rows fill the db
        result = cache.get_or_compute(NS, fp, lambda fp=fp, size=size: (value_for(fp, size), {}))
        ok += result.kind == "miss" and value_matches(fp.pixel_sha, result.value)
    report.put((ok, cache.stats().entries, cache.healthy, cache.status_message))
    cache.close()


def test_a_full_disk_skips_writes_but_serves_every_request(tmp_path: Path, monkeypatch) -> None:
    report = FORK.Queue()
    child = FORK.Process(target=_fill_a_full_disk, args=(tmp_path, report))
    child.start()
    ok, entries, healthy, status = report.get(timeout=120)
    child.join(timeout=30)
    assert child.exitcode == 0 and ok == 80 and healthy
    assert status.startswith("Result cache degraded")  # the UI can say why results are not kept
    assert 0 < entries < 70  # some writes failed, quietly
    monkeypatch.setattr(disk, "ORPHAN_GRACE_S", 0.0)  # sweep half-written files now
    with ResultCache(tmp_path) as cache:
        assert "ready" in cache.status_message
    check_store(tmp_path)


def _write_forever(directory: Path, first_seed: int) -> None:
    cache = ResultCache(directory, size_limit=2_000_000)  # evictions run all the time too
    rng = random.Random(first_seed)
    for seed in range(first_seed, first_seed + 100_000):
        fp = synthetic_fingerprint(seed)
        cache.put(NS, fp, value_for(fp, rng.choice([200, 5_000, 40_000, 150_000])), {"seed": seed})
        cache.lookup(NS, synthetic_fingerprint(rng.randrange(first_seed, seed + 1)))


def test_kill_9_during_writes_leaves_a_consistent_store(tmp_path: Path, monkeypatch) -> None:
    rng = random.Random(0)
    for round_ in range(3):
        writer = FORK.Process(target=_write_forever, args=(tmp_path, 10_000 * round_))
        writer.start()
        time.sleep(rng.uniform(0.6, 1.2))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        check_store(tmp_path, orphans_allowed=True)
    monkeypatch.setattr(disk, "ORPHAN_GRACE_S", 0.0)
    with ResultCache(tmp_path) as cache:
        assert "ready" in cache.status_message  # consistent: nothing had to be moved aside
        counts = check_store(tmp_path)
        assert counts["values"] > 0 and counts["rows"] == counts["values"]
        fp = synthetic_fingerprint(rng.randrange(10))  # still writable and readable
        cache.put(NS, fp, value_for(fp, 500), {})
        assert cache.lookup_raw(NS, fp.raw_sha) is not None


def test_a_hit_is_served_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """Reading never writes: a hit does not wait for (or fail on) a writer that holds the
    database, say a long eviction; only recording its use is skipped."""
    fp = synthetic_fingerprint(1)
    with ResultCache(tmp_path) as cache:
        cache.put(NS, fp, value_for(fp, 50_000), {})
        writer = connect(tmp_path)
        writer.isolation_level = None
        writer.execute("BEGIN IMMEDIATE")
        try:
            hit = cache.lookup_raw(NS, fp.raw_sha)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert hit is not None and hit.kind == "exact" and value_matches(fp.pixel_sha, hit.value)
