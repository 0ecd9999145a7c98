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
  writes or look-ups at all.

Usage: .venv/bin/python -m bench.bench_store   (ANIMEGAN_PHOTOS_DIR overrides the photos)
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bench.common import encoded, machine_line, photo_paths, round_robin, table, write_result
from cache_store import Fingerprint, ResultCache, envelope, result_cache
from tests.support.cache import (
    bursts_of_long_misses,
    disk_usage,
    open_files,
    synthetic_fingerprint,
    value_files,
    value_for,
)

NS = "bench|store|v1"
SIDE = 768
BUDGET_SIDE = 512
ROUNDS = 15
PER_ROUND = 40


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

        try:
            return interleaved({"with CRC-32": with_check, "check skipped": without_check})
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


def report(info: str, value_size: int, sums: dict, hits: dict, disk: dict, fds: list[int], exp: dict) -> str:
    checked, skipped = hits["with CRC-32"], hits["check skipped"]
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
    ]
    return "\n".join(lines)


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
    text = report(info, len(value), sums, hits, disk, fds, exp)
    write_result("store.md", text)
    print(text)


if __name__ == "__main__":
    main()
