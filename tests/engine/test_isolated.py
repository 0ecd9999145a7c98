"""Untrusted files are decoded in worker processes that cannot touch the caller.

Each attack of the hardening issue, built byte by byte: the worker answers it with a
typed error (or decodes it, where the file is only unusual), the caller's own memory does
not grow with it, a worker that breaks a limit is replaced, and ordinary photos keep
decoding, also while other processes keep every core busy.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from PIL import Image

from animegan.errors import ImageError
from animegan.intake import open_image, open_preview
from animegan.isolated import IsolatedDecoder, Upload
from animegan.isolated.jobs import decode_image
from animegan.isolated.protocol import ProtocolError, SharedRegion, receive, send
from tests.support.hostile_files import (
    gif_with_padding,
    padded,
    png_with_chunks,
    tiff_with_long_tag,
    tiff_with_strips,
)

SUBJECT = "The uploaded file"


def upload(data: bytes) -> Upload:
    return Upload.read(data, limit=30 << 20, subject=SUBJECT)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def decoder() -> Iterator[IsolatedDecoder]:
    found = IsolatedDecoder(workers=2)
    yield found
    found.close()


def huge_lossy_webp() -> bytes:
    """16383 x 2990 (49 MP), padded to 2.3 MB: it passes the bytes-per-pixel rule, and
    libwebp and Pillow hold several copies of its pixels while decoding."""
    flat = Image.new("RGB", (16383, 2990), (40, 90, 160))
    return padded(lambda exif: encoded(flat, "WEBP", quality=50, exif=exif), 2_300_000)


def animated_webp_canvas() -> bytes:
    """Two frames on a 7000 x 7000 canvas, padded to 3 MB."""
    frames = [Image.new("RGB", (7000, 7000), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    return padded(
        lambda exif: encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], exif=exif),
        3_000_000,
    )


HOSTILE: dict[str, Callable[[], bytes]] = {
    "TIFF tag of a million rationals": lambda: tiff_with_long_tag(1_000_000),
    "TIFF of a million one-row strips": lambda: tiff_with_strips(1_000_000),
    "PNG of millions of chunks": lambda: png_with_chunks(2_500_000),
    "49 MP lossy WebP": huge_lossy_webp,
    "animated WebP on a 7000 px canvas": animated_webp_canvas,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_costs_a_worker_not_the_caller(decoder, photo_paths, name):
    data = HOSTILE[name]()
    before = rss_mb()
    try:
        preview = decoder.preview(upload(data), min_side=192)
    except ImageError as refused:
        assert refused.reason in ("too_complex", "too_large", "damaged"), refused.reason
        assert str(refused).startswith(SUBJECT)
    else:  # decoded within the worker's limits: a usable preview, and still nothing here
        assert min(preview.image.size) >= 8
    assert rss_mb() - before < 40, "the decoding happened in this process"
    # the pool is whole again: an ordinary photo decodes as in-process decoding would
    photo, _ = decoder.photo(upload(photo_paths[0].read_bytes()), max_side=256)
    assert photo.rgb.tobytes() == open_image(photo_paths[0].read_bytes(), max_side=256).rgb.tobytes()


def test_a_worker_that_spins_is_stopped_by_its_cpu_budget_and_replaced(decoder):
    """Pillow parses these tags in Python inside `Image.open`, reading nothing more: only the
    pool's watchdog can stop it. The worker is killed, and a fresh one takes its place."""
    before = {worker.pid for worker in list(decoder.pool._idle.queue)}
    with pytest.raises(ImageError) as refused:
        decoder.preview(upload(tiff_with_long_tag(3_000_000)), min_side=192)
    assert refused.value.reason == "too_complex" and "too long to decode" in str(refused.value)
    assert decoder.preview(upload(encoded(Image.new("RGB", (64, 48)), "PNG")), min_side=32).size == (64, 48)
    deadline = time.monotonic() + 30
    while decoder.pool._idle.qsize() < decoder.pool.size and time.monotonic() < deadline:
        time.sleep(0.05)  # the replacement starts in the background
    after = {worker.pid for worker in list(decoder.pool._idle.queue)}
    assert len(after) == decoder.pool.size and after - before, "no fresh worker replaced the killed one"


def test_a_decode_over_the_memory_cap_is_refused_and_the_worker_replaced(photo_paths):
    small = IsolatedDecoder(workers=1, memory=48 << 20)
    try:
        big = encoded(Image.effect_noise((3000, 3000), 64).convert("RGB"), "PNG", compress_level=1)
        with pytest.raises(ImageError) as refused:
            small.photo(upload(big), max_side=256)
        assert refused.value.reason == "too_complex" and "memory" in str(refused.value)
        photo, _ = small.photo(upload(photo_paths[1].read_bytes()), max_side=256)
        assert max(photo.size) == 256
    finally:
        small.close()


def test_a_padded_gif_is_a_photo_not_a_crash(decoder):
    """Its animation check reads past the decoding budget: the first frame is served."""
    found = decoder.preview(upload(gif_with_padding(8_000_000)), min_side=8)
    assert found.size == (16, 16)


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_avif_and_heic_photos_are_accepted(decoder, photo_paths, fmt):
    picture = Image.open(photo_paths[2]).convert("RGB")
    photo, _ = decoder.photo(upload(encoded(picture, fmt, quality=80)), max_side=256)
    assert photo.info["format"] == fmt and max(photo.size) == 256


def test_large_compressed_png_metadata_is_dropped_not_refused(decoder):
    from PIL import PngImagePlugin

    notes = PngImagePlugin.PngInfo()
    notes.add_text("Comment", "x" * 2_000_000, zip=True)  # inflates far past the metadata cap
    notes.add_itxt("XML:com.adobe.xmp", "y" * 2_000_000, zip=True)
    data = encoded(Image.new("RGB", (64, 48), (1, 2, 3)), "PNG", pnginfo=notes)
    photo, _ = decoder.photo(upload(data), max_side=None)
    assert photo.size == (64, 48) and photo.rgb.getpixel((0, 0)) == (1, 2, 3)


def test_what_is_not_a_photo_never_reaches_a_parser(decoder):
    for data in (b"%!PS-Adobe-3.0 EPSF-3.0\n" + b" " * 200, encoded(Image.new("RGB", (32, 32)), "PCX")):
        assert upload(data).format is None
        with pytest.raises(ImageError) as refused:
            open_preview(data, min_side=8)
        assert refused.value.reason == "not_image"


def test_ordinary_photos_decode_while_other_processes_keep_every_core_busy(decoder, photo_paths):
    """The budgets are CPU time: a busy machine slows decoding but never refuses a photo."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        for path in photo_paths[:12]:
            photo, _ = decoder.photo(upload(path.read_bytes()), max_side=768)
            assert max(photo.size) <= 768
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_a_path_is_hashed_streaming_and_decoded_by_the_worker(decoder, photo_paths, tmp_path):
    path: Path = photo_paths[3]
    from_path, from_bytes = Upload.read(path, limit=30 << 20, subject=SUBJECT), upload(path.read_bytes())
    assert from_path.data is None and from_path.sha256 == from_bytes.sha256
    assert decoder.preview(from_path, min_side=192).image.tobytes() == (
        decoder.preview(from_bytes, min_side=192).image.tobytes()
    )
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as refused:
        Upload.read(empty, limit=30 << 20, subject=SUBJECT)
    assert refused.value.reason == "empty"


def test_a_workers_reply_is_checked_before_it_is_used():
    with pytest.raises(ValueError):
        decode_image({"mode": "RGB", "size": [10, 10]}, b"\x00" * 299)  # one byte short
    with pytest.raises(ValueError):
        decode_image({"mode": "P", "size": [1, 1]}, b"\x00")
    mine, theirs = socket.socketpair()
    sender, reader = Connection(theirs.detach()), Connection(mine.detach())
    sender.send_bytes(b'{"ok": true, "payloads": 99}')
    with pytest.raises(ProtocolError):
        receive(reader, 1024)
    sender.send_bytes(b"\x80\x04\x95 a pickle is never loaded")
    with pytest.raises(ProtocolError):
        receive(reader, 1024)
    sender.send_bytes(b'{"ok": true, "payloads": 1}')
    sender.send_bytes(b"x" * 2048)
    with pytest.raises(ProtocolError):
        receive(reader, 1024)


def test_reply_pixels_in_the_shared_region_are_bounds_checked():
    created = SharedRegion.create("test-replies", 4096)
    assert created is not None  # Linux has memfd
    region, fd = created
    os.close(fd)
    mine, theirs = socket.socketpair()
    sender, reader = Connection(theirs.detach()), Connection(mine.detach())
    pixels = bytes(range(256)) * 3
    send(sender, {"ok": True}, [pixels, b"tail"], region)
    message = receive(reader, 1024, region)
    assert message.payloads == [pixels, b"tail"] and "shared" not in message.header
    send(sender, {"ok": True}, [b"x" * 5000], region)  # does not fit: down the socket
    assert receive(reader, 8192, region).payloads == [b"x" * 5000]
    hostile = [
        [[4000, 200]],  # past the region's end
        [[-1, 10]],
        [[0, 2000]],  # over the reply limit
        [[0, 1.5]],
        [0, 10],
        "everything",
        [[0, 1]] * 9,  # more payloads than a message may have
    ]
    for spans in hostile:
        sender.send_bytes(json.dumps({"ok": True, "shared": spans, "payloads": 0}).encode())
        with pytest.raises(ProtocolError):
            receive(reader, 1024, region)
    sender.send_bytes(b'{"ok": true, "shared": [[0, 4]], "payloads": 0}')
    with pytest.raises(ProtocolError):  # a reader that gave no region takes none
        receive(reader, 1024)
