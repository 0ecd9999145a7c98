"""A row is only a pointer to a file: a planted one never makes the cache read or delete
anything outside its directory, whichever sweep meets it (expiry, eviction, clear, a look-up,
the orphan sweep at open)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cache_store import ResultCache
from cache_store.backends import disk
from tests.support.cache import connect, synthetic_fingerprint, value_for

NS = "ns"
VALUE_NAME = "0123456789abcdef0123456789ab.val"  # a name of diskcache's own layout


def plant(store: Path, filename: str, *, expired: bool = False, oldest: bool = False) -> None:
    """A value row pointing at `filename`, as anyone who can write the directory could add."""
    now = time.time()
    with connect(store) as con:
        con.execute(
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, size, mode, filename)"
            " VALUES (?, 1, ?, ?, ?, ?, 2, ?)",
            (
                f"v:planted:{filename}",
                now,
                now - 10 if expired else None,
                0 if oldest else now,
                10_000_000,
                filename,
            ),
        )


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Path]:
    """Files outside the cache directory that must survive, and the store's directory."""
    secret = tmp_path / "secret.val"
    secret.write_bytes(b"not the cache's")
    folder = tmp_path / "elsewhere"
    (folder / "cd").mkdir(parents=True)
    linked = folder / "cd" / VALUE_NAME
    linked.write_bytes(b"also not the cache's")
    old = time.time() - 3600
    os.utime(linked, (old, old))
    store = tmp_path / "store"
    with ResultCache(store) as cache:
        fp = synthetic_fingerprint(1)
        cache.put(NS, fp, value_for(fp, 100_000), {})
    link = next(f"{i:02x}" for i in range(256) if not (store / f"{i:02x}").exists())
    (store / link).symlink_to(folder, target_is_directory=True)  # a planted folder link
    (real,) = (
        path for path in store.iterdir() if path.is_dir() and len(path.name) == 2 and path.name != link
    )
    return {"store": store, "secret": secret, "linked": linked, "link": store / link, "real": real}


TARGETS = {
    "parent": lambda paths: os.path.relpath(paths["secret"], paths["store"]),
    "absolute": lambda paths: str(paths["secret"]),
    "dotted": lambda paths: f"{paths['real'].name}/../../secret.val",  # a real folder, then up
    "through_link": lambda paths: f"{paths['link'].name}/cd/{VALUE_NAME}",
}


def survived(paths: dict[str, Path]) -> bool:
    return paths["secret"].read_bytes() == b"not the cache's" and paths["linked"].exists()


@pytest.mark.parametrize("target", TARGETS)
def test_the_expiry_sweep_deletes_nothing_outside(target: str, outside: dict[str, Path]) -> None:
    plant(outside["store"], TARGETS[target](outside), expired=True)
    with ResultCache(outside["store"], sweep_interval=0.1) as cache:  # opening sweeps, then the housekeeper
        deadline = time.monotonic() + 10
        while cache.stats().entries > 1:
            assert time.monotonic() < deadline, "the planted expired row was never swept"
            time.sleep(0.05)
    assert survived(outside)


@pytest.mark.parametrize("target", TARGETS)
def test_eviction_and_clear_delete_nothing_outside(target: str, outside: dict[str, Path]) -> None:
    plant(outside["store"], TARGETS[target](outside), oldest=True)
    # a budget well under the planted row and well over one entry plus the database's log,
    # whose size moves with checkpoints on a busy machine (1 MB was evicted to 1 entry once)
    with ResultCache(outside["store"], size_limit=4_000_000) as cache:
        fp = synthetic_fingerprint(2)
        cache.put(NS, fp, value_for(fp, 100_000), {})  # the planted 10 MB row goes first
        assert cache.stats().entries == 2
        assert survived(outside)
        plant(outside["store"], TARGETS[target](outside))
        cache.clear()
        assert cache.stats().entries == 0
    assert survived(outside)


@pytest.mark.parametrize("target", TARGETS)
def test_a_lookup_reads_and_deletes_nothing_outside(target: str, outside: dict[str, Path]) -> None:
    fp = synthetic_fingerprint(1)
    with connect(outside["store"]) as con:  # the stored entry now points outside
        con.execute("UPDATE Cache SET filename = ?", (TARGETS[target](outside),))
    with ResultCache(outside["store"]) as cache:
        assert cache.lookup_raw(NS, fp.raw_sha) is None and cache.lookup(NS, fp) is None
        assert cache.stats().entries == 0  # refused and dropped
    assert survived(outside)


def test_the_orphan_sweep_does_not_follow_a_planted_folder_link(
    outside: dict[str, Path], monkeypatch
) -> None:
    monkeypatch.setattr(disk, "ORPHAN_GRACE_S", 0.0)
    ResultCache(outside["store"]).close()  # opening sweeps value files no row refers to
    assert survived(outside)
    fp = synthetic_fingerprint(1)
    with ResultCache(outside["store"]) as cache:
        assert cache.lookup_raw(NS, fp.raw_sha) is not None  # the cache's own files are kept
