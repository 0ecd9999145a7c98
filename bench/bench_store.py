"""Benchmark of the store's hardening: what integrity and bounded resources cost.

Not a test. One run (well under a minute on a 2-core box) writes bench/results/store.md:

* the checksum candidates (CRC-32, Adler-32, BLAKE2b-128, SHA-256) on a result-sized PNG
  (the project photo whose 768 px PNG is nearest 300 KB; stylized results are ~260 KB),
  and the exact-hit path (`lookup_raw` on a diskcache store) with the CRC-32 check against
  the same path with the check skipped, interleaved in the same run;
* disk use (what `du` counts: SQLite file, WAL, SHM, value files and their folders) after
  every one of 40 PNGs (the project photos at 512 px, result-sized) put into a 2 MB budget;
* open descriptors on cache.db after each of four bursts of six long misses;
* how long expired results stay on disk with a 1 s TTL and a 1 s sweep interval, with no
  writes or look-ups at all;
* eviction under a flood, on both backends: pinned examples, results that other visitors
  were served again and results nobody came back for, then unique misses from one client
  worth 8 times the byte budget (one-off, or each uploaded twice by the flooder itself);
  how many of each survive, counted after every budget's worth, with the segmented policy,
  the same without telling clients apart (any second hit protects), and a plain LRU (the
  policy before it: the same code with the protected share at 0 and nothing pinned, and
  Redis under allkeys-lru), in the same run.

Usage: .venv/bin/python -m bench.bench_store   (ANIMEGAN_PHOTOS_DIR overrides the photos)
"""

from __future__ import annotations

import contextlib
import hashlib
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import (
    encoded,
    filler_fingerprint,
    machine_line,
    photo_paths,
    round_robin,
    table,
    write_result,
)
from cache_store import Fingerprint, ResultCache, envelope, result_cache
from cache_store.backends import disk as disk_backend
from cache_store.backends import redis as redis_backend
from tests.support.cache import (
    bursts_of_long_misses,
    disk_usage,
    open_files,
    synthetic_fingerprint,
    value_files,
    value_for,
)
from tests.support.redis_server import RedisServer

NS = "bench|store|v1"
SIDE = 768
BUDGET_SIDE = 512
ROUNDS = 15
PER_ROUND = 40
#: The eviction benchmark: byte budget, result size (a 768 px PNG), entries of each kind.
FLOOD_BUDGET = 8 << 20
RESULT = 200_000
EXAMPLES, POPULAR, ONE_OFF = 4, 12, 12
FLOOD_TIMES = 8


def png_of(path: Path, side: int = SIDE) -> tuple[Image.Image, bytes]:
    with Image.open(path) as source:
        image = source.convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image, encoded(image, "PNG", compress_level=3)  # as the service stores results


def interleaved(actions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median microseconds per call of each action, measured round-robin (load bursts hit all)."""
    samples = round_robin(actions, ROUNDS, PER_ROUND)
    return {name: 1000 * statistics.median(values) for name, values in samples.items()}


def unchecked_unpack(blob: bytes):
    """`envelope.unpack` without the CRC: what the hit path cost before the checksum."""
    start = len(envelope.MAGIC) + 8
    _, length = envelope._FIELDS.unpack_from(blob, len(envelope.MAGIC))
    header = envelope.json.loads(blob[start : start + length])
    return blob[start + length :], header["meta"], tuple(header["source_size"])


def checksums(value: bytes) -> dict[str, float]:
    return interleaved(
        {
            "CRC-32 (zlib)": lambda: zlib.crc32(value),
            "Adler-32 (zlib)": lambda: zlib.adler32(value),
            "BLAKE2b-128": lambda: hashlib.blake2b(value, digest_size=16).digest(),
            "SHA-256": lambda: hashlib.sha256(value).digest(),
        }
    )


def hit_path(workdir: Path, image: Image.Image, value: bytes) -> dict[str, float]:
    fp = Fingerprint.of(image, raw_sha="be" * 32)
    with ResultCache(workdir / "hits") as cache:
        cache.put(NS, fp, value, {"style": "hayao"})
        assert cache.lookup_raw(NS, fp.raw_sha).value == value

        def with_check() -> None:
            result_cache.unpack = envelope.unpack
            cache.lookup_raw(NS, fp.raw_sha)

        def without_check() -> None:
            result_cache.unpack = unchecked_unpack
            cache.lookup_raw(NS, fp.raw_sha)

        store = cache._live[0]
        touch = store.touch

        def without_touch() -> None:  # the hit's use not recorded: what recording it costs
            result_cache.unpack = envelope.unpack
            store.touch = lambda *args, **kwargs: None  # type: ignore[method-assign]
            try:
                cache.lookup_raw(NS, fp.raw_sha)
            finally:
                store.touch = touch  # type: ignore[method-assign]

        try:
            return interleaved(
                {"with CRC-32": with_check, "check skipped": without_check, "touch skipped": without_touch}
            )
        finally:
            result_cache.unpack = envelope.unpack


def budget(workdir: Path, photos: list[Path]) -> dict:
    limit = 2 << 20
    directory = workdir / "budget"
    sizes, usage = [], []
    with ResultCache(directory, size_limit=limit) as cache:
        for path in photos[:40]:
            image, value = png_of(path, BUDGET_SIDE)
            fp = Fingerprint.of(image, raw_sha=hashlib.sha256(path.read_bytes()).hexdigest())
            cache.put(NS, fp, value, {})
            cache.lookup_raw(NS, fp.raw_sha)
            sizes.append(len(value))
            usage.append(disk_usage(directory))
        stats = cache.stats()
    files = {
        name: (directory / name).stat().st_size
        for name in ("cache.db", "cache.db-wal", "cache.db-shm")
        if (directory / name).exists()
    }
    return {
        "limit": limit,
        "sizes": sizes,
        "usage": usage,
        "entries": stats.entries,
        "reported": stats.bytes,
        "files": files,
    }


def open_descriptors(workdir: Path) -> list[int]:
    directory = workdir / "fds"
    with ResultCache(directory, lock_ttl=0.3) as cache:
        return [
            len(open_files(directory / "cache.db")),
            *bursts_of_long_misses(cache, directory, namespace=NS),
        ]


def expiry(workdir: Path) -> dict[str, float]:
    directory = workdir / "expiry"
    ttl, interval = 1.0, 1.0
    with ResultCache(directory, ttl=ttl, sweep_interval=interval) as cache:
        for seed in range(5):
            fp = synthetic_fingerprint(seed)
            cache.put(NS, fp, value_for(fp, 100_000), {})
        expired_at = time.monotonic() + ttl
        while value_files(directory):
            time.sleep(0.01)
        gone = time.monotonic()
    return {"ttl": ttl, "interval": interval, "after_expiry_s": gone - expired_at}


@contextlib.contextmanager
def policy(segmented: bool) -> Iterator[None]:
    """The segmented policy, or a plain LRU: no protected share (a served entry is demoted
    again at the next write, keeping its last use) and, by the caller, nothing pinned."""
    if segmented:
        yield
        return
    saved = disk_backend.PROTECTED_SHARE, redis_backend.PROTECTED_SHARE
    disk_backend.PROTECTED_SHARE = redis_backend.PROTECTED_SHARE = 0.0
    try:
        yield
    finally:
        disk_backend.PROTECTED_SHARE, redis_backend.PROTECTED_SHARE = saved


#: The policies compared: name -> (segmented, clients told apart).
POLICIES = {"plain LRU": (False, False), "segmented, any client": (True, False), "segmented": (True, True)}


def flooded(location: Path | str, how: str, self_hits: bool, seed: int) -> dict[str, list[int]]:
    """Survivors of each kind after each budget's worth of a one-client flood."""
    rng = np.random.default_rng(seed)
    segmented, owners = POLICIES[how]

    def who(client: str) -> str | None:
        return client if owners else None

    def entry(cache: ResultCache, client: str, pinned: bool = False) -> Fingerprint:
        fp = filler_fingerprint(rng)
        cache.put(NS, fp, rng.bytes(RESULT), {}, client=who(client), pinned=pinned)
        return fp

    with policy(segmented), ResultCache(location, size_limit=FLOOD_BUDGET) as cache:
        store = cache._live[0]  # read-only peeks: `get` never records a use
        kinds = {
            "examples": [entry(cache, "app", pinned=segmented) for _ in range(EXAMPLES)],
            "popular": [entry(cache, f"visitor-{i}") for i in range(POPULAR)],
            "one-off": [entry(cache, f"visitor-{POPULAR + i}") for i in range(ONE_OFF)],
        }
        # served again to another visitor (Redis, whose LRU is sampled, may have evicted one first)
        kinds["popular"] = [
            fp for fp in kinds["popular"] if cache.lookup_raw(NS, fp.raw_sha, client=who("another visitor"))
        ]
        survivors: dict[str, list[int]] = {kind: [] for kind in kinds}
        survivors["served again"] = [len(kinds["popular"])]
        for _ in range(FLOOD_TIMES):
            for _ in range(FLOOD_BUDGET // RESULT):
                fp = entry(cache, "flooder")
                if self_hits:
                    cache.lookup_raw(NS, fp.raw_sha, client=who("flooder"))
            for kind, prints in kinds.items():
                keys = (f"v:{result_cache.namespace_id(NS)}:{fp.pixel_sha}" for fp in prints)
                survivors[kind].append(sum(store.get(key) is not None for key in keys))
    return survivors


def eviction(workdir: Path) -> dict[str, dict]:
    """Every policy x flood, on a directory and on a Redis server whose maxmemory is its
    memory in use plus the budget (volatile-lru for the segmented policy, allkeys-lru before)."""
    found: dict[str, dict] = {}
    server = RedisServer(workdir / "redis")
    (workdir / "redis").mkdir()
    server.start()
    client = server.client()
    try:
        for backend in ("disk", "redis"):
            for how, (segmented, _) in POLICIES.items():
                for self_hits in (False, True):
                    if backend == "disk":
                        location: Path | str = workdir / f"flood-{len(found)}"
                    else:
                        client.flushdb()
                        client.config_set("maxmemory", 0)
                        client.config_set("maxmemory-policy", "volatile-lru" if segmented else "allkeys-lru")
                        client.config_set("maxmemory", client.info("memory")["used_memory"] + FLOOD_BUDGET)
                        location = server.url()
                    found[f"{backend}|{how}|{self_hits}"] = flooded(location, how, self_hits, seed=len(found))
    finally:
        server.stop()
    return found


def eviction_rows(found: dict[str, dict]) -> list[tuple[object, ...]]:
    rows = []
    for name, survivors in found.items():
        backend, how, self_hits = name.split("|")
        flood = "each twice (own re-uploads)" if self_hits == "True" else "one-off"
        totals = (("examples", EXAMPLES), ("popular", survivors["served again"][0]), ("one-off", ONE_OFF))
        cells = [
            f"{'/'.join(str(survivors[kind][times - 1]) for times in (1, 2, 4, 8))} of {total}"
            for kind, total in totals
        ]
        rows.append((backend, how, flood, *cells))
    return rows


def report(
    info: str,
    value_size: int,
    sums: dict,
    hits: dict,
    disk: dict,
    fds: list[int],
    exp: dict,
    flood: dict[str, dict],
) -> str:
    checked, skipped, untouched = hits["with CRC-32"], hits["check skipped"], hits["touch skipped"]
    worst, limit = max(disk["usage"]), disk["limit"]
    summary = [
        (
            f"CRC-32 of a {value_size / 1000:.0f} KB PNG result",
            f"{sums['CRC-32 (zlib)']:.0f} µs (SHA-256 {sums['SHA-256']:.0f} µs, "
            f"BLAKE2b {sums['BLAKE2b-128']:.0f} µs)",
            "cheap",
        ),
        (
            "exact hit (`lookup_raw`), with the check vs skipped",
            f"{checked:.0f} µs vs {skipped:.0f} µs (+{checked - skipped:.0f} µs, "
            f"{100 * (checked - skipped) / skipped:+.0f} %)",
            "cheap",
        ),
        (
            "exact hit, with its use recorded (`touch`: LRU order, promotion) vs not",
            f"{checked:.0f} µs vs {untouched:.0f} µs (+{checked - untouched:.0f} µs)",
            "cheap",
        ),
        (
            "disk use with a 2 MB budget over 40 results, worst",
            f"{worst / 2**20:.2f} MB ({100 * worst / limit:.0f} % of the budget)",
            "≤ 110 %",
        ),
        ("open descriptors on cache.db: idle, then after each of 4 bursts", ", ".join(map(str, fds)), "flat"),
        (
            "expired results on disk after their TTL (1 s sweep interval, no traffic)",
            f"{exp['after_expiry_s']:.2f} s",
            "≤ 1 sweep interval",
        ),
        *(
            (
                f"after a one-client flood of {FLOOD_TIMES}x the budget ({backend}): examples and "
                "results others were served again, kept (plain LRU → segmented; flood of one-off misses, "
                "of own re-uploads)",
                "; ".join(
                    " → ".join(kept(flood, backend, how, self_hits) for how in ("plain LRU", "segmented"))
                    for self_hits in (False, True)
                ),
                "all",
            )
            for backend in ("disk", "redis")
        ),
    ]
    candidates = [(name, f"{us:.0f}", f"{value_size / us / 1000:.2f}") for name, us in sums.items()]
    sizes = f"{min(disk['sizes']) / 1000:.0f}-{max(disk['sizes']) / 1000:.0f} KB"
    lines = [
        "# Store hardening: integrity and bounded resources",
        "",
        f"Machine: {info}",
        "",
        "## Summary",
        "",
        *table("what | measured | goal", summary),
        "",
        "## Checksum candidates",
        "",
        f"Median of {ROUNDS} rounds of {PER_ROUND} calls each, round-robin, on a {value_size:,}-byte PNG "
        f"(a project photo at {SIDE} px, compress level 3, as results are stored).",
        "",
        *table("checksum | µs | GB/s", candidates, "lrr"),
        "",
        "CRC-32 is the cheapest that catches truncation and flipped bits (what a power loss",
        "leaves); it is not a seal against someone who can write the store, and need not be.",
        "",
        "## Disk use under a 2 MB budget",
        "",
        f"40 project photos as {BUDGET_SIDE} px PNGs ({sizes}), "
        "each put and then read once. Disk use is what `du` counts after each put.",
        "",
        f"- worst {worst:,} B, last {disk['usage'][-1]:,} B, budget {limit:,} B; "
        f"{disk['entries']} results kept; the cache panel reports {disk['reported']:,} B",
        f"- SQLite files at the end: {', '.join(f'{k} {v:,} B' for k, v in disk['files'].items())}",
        f"- after each put (KB): {', '.join(str(round(u / 1024)) for u in disk['usage'])}",
        "",
        "## Eviction under a flood from one client",
        "",
        f"A {FLOOD_BUDGET >> 20} MB budget (a directory's size limit; Redis: maxmemory = its memory in use "
        f"+ {FLOOD_BUDGET >> 20} MB) holds {EXAMPLES} examples (pinned, with the segmented policy), "
        f"{POPULAR} results of other visitors that another visitor was served again, and {ONE_OFF} that "
        f"nobody came back for, all {RESULT // 1000} KB. Then one client sends unique misses of the same "
        f"size, {FLOOD_TIMES}x the budget in all: one-off, or each uploaded twice (its second upload an "
        "exact hit for the flooder itself). Survivors of each kind after 1x / 2x / 4x / 8x the budget. "
        "*Plain LRU* is the policy before the segments: the same code with no protected share and "
        "nothing pinned, and Redis under allkeys-lru; *segmented*: pinned examples, a protected "
        "share of 1/2, promotion only by another client's hit, and Redis under volatile-lru; "
        "*segmented, any client*: the same, but the cache is not told who asks, so any second hit "
        "protects (the flooder's own re-uploads too).",
        "",
        *table(
            "backend | policy | flood | examples | popular | nobody came back",
            eviction_rows(flood),
            "lllrrr",
        ),
        "",
    ]
    return "\n".join(lines)


def kept(flood: dict[str, dict], backend: str, how: str, self_hits: bool) -> str:
    """Examples and popular results left after the whole flood, as "n of m"."""
    survivors = flood[f"{backend}|{how}|{self_hits}"]
    total = EXAMPLES + survivors["served again"][0]
    return f"{survivors['examples'][-1] + survivors['popular'][-1]} of {total}"


def main() -> None:
    photos = photo_paths()
    image, value = min((png_of(path) for path in photos), key=lambda pair: abs(len(pair[1]) - 300_000))
    info = machine_line()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sums = checksums(value)
        hits = hit_path(workdir, image, value)
        disk = budget(workdir, photos)
        fds = open_descriptors(workdir)
        exp = expiry(workdir)
        flood = eviction(workdir)
    text = report(info, len(value), sums, hits, disk, fds, exp, flood)
    write_result("store.md", text)
    print(text)


if __name__ == "__main__":
    main()
