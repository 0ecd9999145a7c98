"""A damaged or malformed entry is never served and never fails a look-up, on both backends.

A value that fails its checksum (a truncated file, flipped bits, a blob of the old format)
is a miss that the request recomputes and stores again; a tampered fuzzy row (wrong types or
sizes in SQLite, a malformed stream entry or row field in Redis) is dropped and logged while
every other entry of its namespace keeps working.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest
import redis
from PIL import Image

from cache_store import Fingerprint, ResultCache
from cache_store.result_cache import namespace_id
from tests.support.cache import (
    check,
    connect,
    reencode,
    rewrite_value,
    stored_print,
    value_for,
    value_matches,
)

NS = "ns"


def truncated(blob: bytes) -> bytes:
    return blob[: len(blob) * 2 // 3]


def flipped(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 0x10]) + blob[middle + 1 :]


def first_format(blob: bytes) -> bytes:
    """The same entry as the first envelope format (no checksum) wrote it."""
    from cache_store.envelope import unpack

    value, meta, size = unpack(blob)
    header = json.dumps({"meta": meta, "source_size": list(size)}).encode()
    return b"CSv1" + struct.pack(">I", len(header)) + header + value


@pytest.fixture
def photos(fitted: dict[str, Image.Image]) -> tuple[Image.Image, Image.Image]:
    first, second = list(fitted.values())[:2]
    return first, second


@pytest.mark.parametrize("size", [300_000, 3_000], ids=["file", "inline"])
@pytest.mark.parametrize("damage", [truncated, flipped, first_format], ids=["truncated", "flipped", "v1"])
def test_a_damaged_value_is_recomputed_and_replaced(
    location: Path | str, damage, size: int, photos, caplog: pytest.LogCaptureFixture
) -> None:
    image = photos[0]
    fp = stored_print(image, raw_sha="ab" * 32)
    variant = Fingerprint.of(reencode(image, "WEBP"))
    computed = []

    def compute() -> tuple[bytes, dict]:
        computed.append(1)
        return value_for(fp, size), {"again": True}

    with ResultCache(location) as cache:

        def store_damaged() -> None:
            cache.put(NS, fp, value_for(fp, size), {})
            rewrite_value(location, fp, NS, damage)

        store_damaged()
        with caplog.at_level(logging.WARNING, logger="cache_store"):
            assert cache.lookup_raw(NS, fp.raw_sha) is None  # the raw fast path
        assert "dropping an unreadable entry" in caplog.text
        assert check(location) == {"values": 0, "rows": 0, "aliases": 0}  # dropped, not kept
        store_damaged()
        assert cache.lookup(NS, variant) is None  # a near-duplicate is never served from it
        store_damaged()
        result = cache.get_or_compute(NS, fp, compute)  # the photo's own request
        assert result.kind == "miss" and computed == [1]
        assert value_matches(fp.pixel_sha, result.value)
        hit = cache.lookup(NS, fp)
        assert hit.kind == "exact" and hit.meta == {"again": True} and value_matches(fp.pixel_sha, hit.value)
    assert check(location) == {"values": 1, "rows": 1, "aliases": 1}  # check() unpacks: whole again


def tamper_sqlite(directory: Path, fp: Fingerprint, assignment: str, *args: object) -> None:
    with connect(directory) as con:
        con.execute(f"UPDATE cs_entry SET {assignment} WHERE value_key LIKE ?", (*args, f"%{fp.pixel_sha}"))


def tamper_redis(url: str, fp: Fingerprint, field: str, value: bytes) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.hset(f"rc:v:{namespace_id(NS)}:{fp.pixel_sha}", field, value)
    finally:
        client.close()


def plant_stream_entry(url: str, fields: dict[str, bytes]) -> None:
    client = redis.Redis.from_url(url)
    try:
        stream = f"rc:x:{namespace_id(NS)}"
        last = client.xrevrange(stream, count=1)[0][0].decode()
        client.xadd(stream, fields, id=f"{int(last.split('-')[0]) + 1}-0")
    finally:
        client.close()


SQLITE_TAMPERING = {
    "phash_text": ("phash = ?", "not a hash"),
    "phash_real": ("phash = ?", 1.5),
    "signature_short": ("signature = ?", b"\x00" * 7),
    "signature_text": ("signature = ?", "x" * 384),
    "width_zero": ("width = ?", 0),
    "height_text": ("height = ?", "tall"),
    "alpha_text": ("has_alpha = ?", "yes"),
}


@pytest.mark.parametrize("how", SQLITE_TAMPERING)
def test_a_tampered_sqlite_row_is_dropped_and_the_namespace_keeps_working(
    how: str, tmp_path: Path, photos, caplog: pytest.LogCaptureFixture
) -> None:
    (bad, good) = photos
    bad_fp, good_fp = stored_print(bad, raw_sha="01" * 32), stored_print(good, raw_sha="02" * 32)
    with ResultCache(tmp_path) as writer:
        writer.put(NS, bad_fp, value_for(bad_fp, 5_000), {})
        writer.put(NS, good_fp, value_for(good_fp, 5_000), {})
    tamper_sqlite(tmp_path, bad_fp, *SQLITE_TAMPERING[how])
    with ResultCache(tmp_path) as cache, caplog.at_level(logging.WARNING, logger="cache_store"):
        for _ in range(2):  # the first look-up meets the row, the second finds it gone
            assert cache.lookup(NS, Fingerprint.of(reencode(bad, "JPEG", quality=70))) is None
            assert cache.lookup(NS, Fingerprint.of(reencode(good, "JPEG", quality=70))).kind == "fuzzy"
        assert "malformed" in caplog.text or "fuzzy row" in caplog.text
    assert check(tmp_path)["rows"] == 1


REDIS_ROW_TAMPERING = {
    "width_text": ("w", b"wide"),
    "height_negative": ("h", b"-3"),
    "alpha_other": ("a", b"maybe"),
    "signature_short": ("s", b"\x01\x02"),
}


@pytest.mark.redis
@pytest.mark.parametrize("how", REDIS_ROW_TAMPERING)
def test_a_tampered_redis_row_is_dropped_and_the_namespace_keeps_working(
    how: str, redis_url: str, photos, caplog: pytest.LogCaptureFixture
) -> None:
    (bad, good) = photos
    bad_fp, good_fp = stored_print(bad, raw_sha="01" * 32), stored_print(good, raw_sha="02" * 32)
    with ResultCache(redis_url) as cache, caplog.at_level(logging.WARNING, logger="cache_store"):
        cache.put(NS, bad_fp, value_for(bad_fp, 5_000), {})
        cache.put(NS, good_fp, value_for(good_fp, 5_000), {})
        tamper_redis(redis_url, bad_fp, *REDIS_ROW_TAMPERING[how])
        for _ in range(2):
            assert cache.lookup(NS, Fingerprint.of(reencode(bad, "JPEG", quality=70))) is None
            assert cache.lookup(NS, Fingerprint.of(reencode(good, "JPEG", quality=70))).kind == "fuzzy"
        assert "malformed" in caplog.text or "fuzzy row" in caplog.text
    assert check(redis_url)["rows"] == 1


STREAM_ENTRIES = {
    "short_hash": {"p": b"\x01\x02\x03", "k": b"v:x:y"},
    "long_hash": {"p": b"\x01" * 16, "k": b"v:x:y"},  # would shift every later hash by 8 bytes
    "fields_swapped": {"k": b"v:x:y", "p": b"\x01" * 8},
    "extra_field": {"p": b"\x01" * 8, "k": b"v:x:y", "z": b"1"},
}


@pytest.mark.redis
@pytest.mark.parametrize("how", STREAM_ENTRIES)
def test_a_malformed_stream_entry_is_dropped_and_the_namespace_keeps_working(
    how: str, redis_url: str, photos, caplog: pytest.LogCaptureFixture
) -> None:
    (first, second) = photos
    fp = stored_print(first)
    with ResultCache(redis_url) as writer:
        writer.put(NS, fp, value_for(fp, 5_000), {})
    plant_stream_entry(redis_url, STREAM_ENTRIES[how])
    later = stored_print(second)
    with ResultCache(redis_url) as writer:
        writer.put(NS, later, value_for(later, 5_000), {})  # a good row after the bad one
    with ResultCache(redis_url) as cache, caplog.at_level(logging.WARNING, logger="cache_store"):
        for image in (first, second):
            hit = cache.lookup(NS, Fingerprint.of(reencode(image, "JPEG", quality=70)))
            assert hit is not None and hit.kind == "fuzzy"
        assert "malformed stream entries" in caplog.text
    assert check(redis_url) == {"values": 2, "rows": 2, "aliases": 0}
