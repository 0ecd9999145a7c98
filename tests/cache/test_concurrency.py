"""Threads and processes sharing one directory: nothing lost or torn, each key computed once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cache_store import ResultCache
from tests.support.cache import check, synthetic_fingerprint, value_for, value_matches

NS = "ns"
FORK = multiprocessing.get_context("fork")
SHARED_SEEDS = range(4)


def _compute_logged(seed: int, log: Path, seconds: float):
    def compute() -> tuple[bytes, dict]:
        with open(log, "a") as handle:  # O_APPEND: one whole line per call, across processes
            handle.write(f"{seed}\n")
        time.sleep(seconds)
        return value_for(synthetic_fingerprint(seed), 40_000), {"seed": seed}

    return compute


def _hammer(directory: Path | str, worker: int, log: Path, results) -> None:
    """Two threads: the shared keys through get_or_compute, plus 25 own entries each."""
    cache = ResultCache(directory)

    def run(thread: int) -> list[tuple[int, str, str]]:
        rng = random.Random(worker * 10 + thread)
        seen = []
        seeds = list(SHARED_SEEDS)
        rng.shuffle(seeds)
        for seed in seeds:
            hit = cache.get_or_compute(NS, synthetic_fingerprint(seed), _compute_logged(seed, log, 0.15))
            seen.append((seed, hit.kind, hashlib.sha256(hit.value).hexdigest()))
        for i in range(25):
            own = 1000 + 100 * (2 * worker + thread) + i
            fp = synthetic_fingerprint(own)
            cache.put(NS, fp, value_for(fp, rng.choice([500, 60_000])), {"seed": own})
            other = synthetic_fingerprint(1000 + rng.randrange(600))
            cache.lookup(NS, other)
        return seen

    with ThreadPoolExecutor(2) as pool:
        for seen in pool.map(run, range(2)):
            results.put(seen)
    cache.close()


def test_processes_and_threads_compute_each_key_once(location: Path | str, tmp_path: Path) -> None:
    store, log = location, tmp_path / "computed.log"
    results = FORK.Queue()
    workers = [FORK.Process(target=_hammer, args=(store, w, log, results)) for w in range(3)]
    for worker in workers:
        worker.start()
    outcomes = [item for _ in range(6) for item in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert Counter(log.read_text().split()) == {str(seed): 1 for seed in SHARED_SEEDS}
    for seed in SHARED_SEEDS:
        mine = [(kind, digest) for s, kind, digest in outcomes if s == seed]
        assert len(mine) == 6 and len({digest for _, digest in mine}) == 1
        assert sorted(kind for kind, _ in mine).count("miss") == 1
        assert {kind for kind, _ in mine} <= {"miss", "coalesced", "exact"}
    counts = check(store)  # every value whole and under its own key, rows in step
    assert counts == {"values": 154, "rows": 154, "aliases": 154}
    with ResultCache(store) as cache:
        stats = cache.stats()
        assert stats.entries == 154 and stats.lookups == 0  # the cache counts only what callers record
        for seed in [*SHARED_SEEDS, *range(1000, 1600, 100)]:
            fp = synthetic_fingerprint(seed)
            assert value_matches(fp.pixel_sha, cache.lookup_raw(NS, fp.raw_sha).value)


def test_threads_take_over_when_the_computing_caller_fails(location: Path | str) -> None:
    fp = synthetic_fingerprint(7)
    calls = []

    def compute() -> tuple[bytes, dict]:
        calls.append(threading.get_ident())
        time.sleep(0.2)
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return b"styled", {}

    def call() -> str:
        try:
            return cache.get_or_compute(NS, fp, compute).kind
        except RuntimeError:
            return "raised"

    with ResultCache(location) as cache, ThreadPoolExecutor(4) as pool:
        kinds = sorted(pool.map(lambda _: call(), range(4)))
    assert len(calls) == 2
    assert kinds == ["coalesced", "coalesced", "miss", "raised"]


def _hold_lease(directory: Path | str, holding) -> None:
    cache = ResultCache(directory, lock_ttl=0.6)

    def compute() -> tuple[bytes, dict]:
        holding.set()
        time.sleep(60)
        return b"never", {}

    cache.get_or_compute(NS, synthetic_fingerprint(3), compute)


def test_a_killed_holder_blocks_others_only_until_its_lease_expires(location: Path | str) -> None:
    holding = FORK.Event()
    holder = FORK.Process(target=_hold_lease, args=(location, holding))
    holder.start()
    assert holding.wait(30)
    computed = threading.Event()
    result = []

    def compute() -> tuple[bytes, dict]:
        computed.set()
        return b"mine", {}

    with ResultCache(location, lock_ttl=0.6) as cache:
        waiter = threading.Thread(
            target=lambda: result.append(cache.get_or_compute(NS, synthetic_fingerprint(3), compute))
        )
        waiter.start()
        # the holder's heartbeat keeps its lease past lock_ttl while it lives
        assert not computed.wait(2.0)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        waiter.join(timeout=30)
    assert result and result[0].kind == "miss" and result[0].value == b"mine"
