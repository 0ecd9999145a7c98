"""Helpers for the cache_store tests (tests/cache/): store invariants read straight from
SQLite, fitting like the service, and fingerprints of synthetic pictures for tests that need
many distinct entries."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import redis
from PIL import Image

from cache_store import Fingerprint, ResultCache
from cache_store.envelope import unpack
from cache_store.result_cache import namespace_id

MAX_SIDE = 512


def fit(image: Image.Image, side: int = MAX_SIDE) -> Image.Image:
    """Downscale like the service does before fingerprinting (longest side <= side)."""
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def reencode(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode)


def stored_print(image: Image.Image, **options: object) -> Fingerprint:
    """The fingerprint of an entry to store: calibrated on its picture, so it can be found
    as a near-duplicate."""
    return Fingerprint.of(image, **options).calibrated(image)


def synthetic_fingerprint(seed: int, size: tuple[int, int] = (48, 32)) -> Fingerprint:
    """A distinct random picture per seed (random pictures are far apart in pHash)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Fingerprint.of(Image.fromarray(pixels), raw_sha=hashlib.sha256(f"file{seed}".encode()).hexdigest())


def value_for(fp: Fingerprint, size: int) -> bytes:
    """A value that names its key, so a torn or swapped value is detectable."""
    head = fp.pixel_sha.encode()
    return head + hashlib.sha256(head).digest() * (max(0, size - len(head)) // 32 + 1)


def value_matches(fp_sha: str, value: bytes) -> bool:
    head = fp_sha.encode()
    return value.startswith(head) and value[len(head) : len(head) + 32] == hashlib.sha256(head).digest()


def indexed_rows(cache: ResultCache, namespace: str) -> int:
    """Rows in this process's in-memory pHash index of `namespace`, synced with the store
    by a lookup that misses (white-box: the index itself has no public view)."""
    cache.lookup(namespace, synthetic_fingerprint(10**6))
    _, tier = cache._live
    return len(tier._indexes[namespace_id(namespace)])


def check(location: Path | str) -> dict[str, int]:
    """`check_store` for a directory, `check_redis` for a Redis URL."""
    if isinstance(location, Path):
        return check_store(location)
    from tests.support.redis_server import check_redis

    client = redis.Redis.from_url(location)
    try:
        return check_redis(client)
    finally:
        client.close()


def connect(directory: Path) -> sqlite3.Connection:
    return sqlite3.connect(Path(directory) / "cache.db", timeout=10)


def check_store(directory: Path, *, orphans_allowed: bool = False) -> dict[str, int]:
    """Assert the on-disk invariants; return row counts.

    Every fuzzy row and alias points at a stored value, every value is a readable envelope
    whose bytes name its own key, every value file exists and (unless allowed) no file on
    disk is unreferenced.
    """
    directory = Path(directory)
    with connect(directory) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        values = {
            key: (mode, filename, value)
            for key, mode, filename, value in con.execute("SELECT key, mode, filename, value FROM Cache")
        }
        rows = con.execute("SELECT value_key FROM cs_entry").fetchall()
        aliases = con.execute("SELECT value_key FROM cs_alias").fetchall()
    assert all(key in values for (key,) in rows), "fuzzy row without a value"
    assert all(key in values for (key,) in aliases), "alias without a value"
    assert len(set(rows)) == len(rows)
    referenced = set()
    for key, (_mode, filename, inline) in values.items():
        assert key.startswith("v:")
        blob = inline if filename is None else (directory / filename).read_bytes()
        if filename is not None:
            referenced.add((directory / filename).resolve())
        value, _, _ = unpack(blob)
        assert value_matches(key.rsplit(":", 1)[1], value), f"torn or swapped value under {key}"
    on_disk = {path.resolve() for path in directory.glob("*/*/*.val")}
    if not orphans_allowed:
        assert on_disk == referenced, f"{len(on_disk - referenced)} orphan value files"
    return {"values": len(values), "rows": len(rows), "aliases": len(aliases)}


def rewrite_value(location: Path | str, fp: Fingerprint, namespace: str, change) -> None:
    """Replace the stored blob of `fp`'s value with `change(blob)`, where it lies: the value
    file or the inline row of a directory, the hash field of a Redis value."""
    key = f"v:{namespace_id(namespace)}:{fp.pixel_sha}"
    if isinstance(location, Path):
        with connect(location) as con:
            filename, inline = con.execute(
                "SELECT filename, value FROM Cache WHERE key = ?", (key,)
            ).fetchone()
            if filename is None:
                con.execute("UPDATE Cache SET value = ? WHERE key = ?", (change(bytes(inline)), key))
        if filename is not None:
            path = location / filename
            path.write_bytes(change(path.read_bytes()))
        return
    client = redis.Redis.from_url(location)
    try:
        client.hset("rc:" + key, "b", change(client.hget("rc:" + key, "b")))
    finally:
        client.close()


def disk_usage(directory: Path) -> int:
    """What `du -s --bytes-allocated` would say: allocated blocks of every file and folder."""
    total = directory.lstat().st_blocks * 512
    for root, folders, files in os.walk(directory):
        for name in folders + files:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def open_files(prefix: Path | str) -> list[str]:
    """Targets of this process's open file descriptors that start with `prefix` (Linux)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(str(prefix)):
            found.append(target)
    return found


def value_files(directory: Path) -> list[Path]:
    """The value files under `directory`; safe while a sweep deletes folders (os.walk skips
    a folder that vanished, where Path.glob raises)."""
    return [
        Path(root) / name for root, _, files in os.walk(directory) for name in files if name.endswith(".val")
    ]


def bursts_of_long_misses(
    cache: ResultCache, directory: Path, bursts: int = 4, namespace: str = "ns"
) -> list[int]:
    """Open descriptors of `directory`'s cache.db after each burst of 6 long misses (each
    beats its lease from a thread of its own) and 3 short-lived threads reading the
    statistics, as Gradio's workers do (Linux)."""
    seeds = iter(range(10_000))

    def long_miss() -> None:
        fp = synthetic_fingerprint(next(seeds))
        cache.get_or_compute(namespace, fp, lambda: (time.sleep(0.4), (value_for(fp, 2_000), {}))[1])

    counts = []
    for _ in range(bursts):
        threads = [threading.Thread(target=long_miss) for _ in range(6)]
        threads += [threading.Thread(target=cache.stats) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counts.append(len(open_files(Path(directory) / "cache.db")))
    return counts
