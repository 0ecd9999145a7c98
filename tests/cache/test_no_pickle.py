"""Stored values are raw bytes: nothing in the cache directory is ever unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import diskcache
import pytest

from cache_store import ResultCache
from cache_store.backends.bytes_only_disk import BytesOnlyDisk, RefusedValue
from tests.support.cache import check_store, connect, synthetic_fingerprint, value_for

NS = "ns"


class Planted:
    """Unpickling this creates a marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("size", [100, 100_000], ids=["inline", "file"])
def test_planted_pickles_are_refused_and_dropped(size: int, tmp_path: Path) -> None:
    store, marker = tmp_path / "store", tmp_path / "unpickled"
    fp = synthetic_fingerprint(1)
    with ResultCache(store) as cache:
        cache.put(NS, fp, value_for(fp, size), {})
    payload = pickle.dumps(Planted(marker))
    with connect(store) as con:  # what an attacker with write access could do
        (filename,) = con.execute("SELECT filename FROM Cache").fetchone()
        if filename is None:
            con.execute("UPDATE Cache SET mode = 4, value = ?", (payload,))
        else:
            (store / filename).write_bytes(payload)
            con.execute("UPDATE Cache SET mode = 4")
    with ResultCache(store) as cache:
        assert cache.lookup_raw(NS, fp.raw_sha) is None
        assert cache.lookup(NS, fp) is None
        assert not marker.exists()
        assert cache.stats().entries == 0  # the planted row is gone, with its fuzzy row
    assert check_store(store) == {"values": 0, "rows": 0, "aliases": 0}


def test_a_value_file_outside_the_cache_layout_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the web")
    fp = synthetic_fingerprint(2)
    with ResultCache(tmp_path / "store") as cache:
        cache.put(NS, fp, value_for(fp, 100_000), {})
        with connect(tmp_path / "store") as con:
            con.execute("UPDATE Cache SET filename = '../secret.txt'")
        assert cache.lookup(NS, fp) is None


def test_bytes_only_disk_stores_nothing_but_bytes(tmp_path: Path) -> None:
    with diskcache.Cache(str(tmp_path), disk=BytesOnlyDisk) as raw:
        raw.set("ok", b"bytes")
        assert raw.get("ok") == b"bytes"
        for value in ({"a": 1}, "text", 3, None):
            with pytest.raises(TypeError):
                raw.set("k", value)
        with pytest.raises(TypeError):
            raw.set(("tuple", "key"), b"x")
    with diskcache.Cache(str(tmp_path)) as default:  # diskcache's own Disk: pickles
        default.set("ok", {"pickled": True})
    with diskcache.Cache(str(tmp_path), disk=BytesOnlyDisk) as raw, pytest.raises(RefusedValue):
        raw.get("ok")
