"""Hostile files cost milliseconds: each cost a file can choose is bounded before it is paid.

Every file here is small and crafted to make a naive decoder work hard: many TIFF pages,
a huge EXIF block, millions of PNG chunks, a JPEG of many scans, a tiny file of many
pixels, a 16-bit picture that used to be converted to float at full size, formats that are
not photos. Costs are compared with an honest file measured in the same run (these
machines are noisy); memory is measured in a fresh process.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animegan.errors import ImageError
from animegan.intake import open_image, open_preview
from animegan.safe_decode import MAX_JPEG_SCANS
from tests.support.hostile_files import exif_with_description, multipage_tiff, png_with_chunks

REPO = Path(__file__).resolve().parents[2]


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def seconds(action, repeat: int = 3) -> float:
    """The fastest of a few runs: the cost of the work itself, not of the box's load."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        with contextlib.suppress(ImageError):
            action()
        best = min(best, time.perf_counter() - started)
    return best


def test_a_tiff_of_forty_thousand_pages_costs_what_one_page_costs() -> None:
    hostile, honest = multipage_tiff(40_000), multipage_tiff(1)
    assert len(hostile) > 4_000_000 and Image.open(io.BytesIO(honest)).size == (16, 16)
    assert np.asarray(open_image(hostile).rgb).std() > 0  # the first page is used
    # Counting the pages (as intake once did) walked all 40,000 IFDs: seconds.
    assert seconds(lambda: open_image(hostile)) < 20 * seconds(lambda: open_image(honest)) + 0.05


def test_a_huge_exif_block_is_dropped_unread() -> None:
    picture = Image.new("RGB", (64, 48), (120, 30, 200))
    small = encode(picture, "PNG", exif=exif_with_description(100))
    huge = encode(picture, "PNG", exif=exif_with_description(24_000_000))
    assert open_image(small).size == (48, 64)  # a normal EXIF orientation is applied
    assert open_image(huge).size == (64, 48)  # 24 MB of EXIF: not parsed, picture upright as stored
    assert seconds(lambda: open_image(huge)) < 10 * seconds(lambda: open_image(small)) + 0.1


def test_millions_of_png_chunks_run_out_of_decoding_time() -> None:
    """No single limit foresees this one; the decoding time budget stops it."""
    assert open_image(png_with_chunks(10)).size == (16, 16)
    with pytest.raises(ImageError) as refused:
        open_image(png_with_chunks(2_500_000))  # 30 MB: parsing the chunks takes seconds
    assert refused.value.reason == "too_complex" and "decode" in str(refused.value)


def test_a_jpeg_of_many_scans_is_refused_before_decoding() -> None:
    photo = Image.radial_gradient("L").convert("RGB").resize((256, 256))
    progressive = encode(photo, "JPEG", quality=85, progressive=True)
    assert open_image(progressive).size == (256, 256)
    last_scan = progressive.rindex(b"\xff\xda")
    extra = progressive[last_scan:-2] * (MAX_JPEG_SCANS + 5)  # the last scan, again and again
    hostile = progressive[:-2] + extra + b"\xff\xd9"
    with pytest.raises(ImageError) as refused:
        open_image(hostile)
    assert refused.value.reason == "too_complex"


def test_a_tiny_file_of_many_pixels_is_refused_unless_it_is_a_jpeg() -> None:
    flat = Image.new("RGB", (5000, 5000), (90, 140, 60))
    for fmt in ("PNG", "WEBP"):
        data = encode(flat, fmt)
        assert len(data) < 300_000
        with pytest.raises(ImageError) as refused:
            open_preview(data, min_side=256)
        assert refused.value.reason == "too_complex", fmt
    # A JPEG is decoded at 1/8 scale, so its pixels cost little: it is accepted.
    assert open_preview(encode(flat, "JPEG", quality=90), min_side=256).size == (5000, 5000)


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "ICNS"])
def test_formats_that_are_not_photo_formats_are_refused(fmt: str) -> None:
    data = encode(Image.new("RGB", (64, 64), (10, 200, 30)), fmt)
    with pytest.raises(ImageError) as refused:
        open_image(data)
    assert refused.value.reason == "not_image"


def test_a_large_16_bit_png_is_decoded_in_bounded_memory(tmp_path: Path) -> None:
    """Peak memory over the decoded frame itself stays small (the float64 path took GBs)."""
    side = 5000
    rng = np.random.default_rng(0)
    values = (np.add.outer(np.arange(side), np.arange(side)) * 6 + rng.integers(0, 4, (side, side))).astype(
        np.uint16
    )
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    del values
    probe = (
        "import resource, sys\n"
        "from animegan.intake import open_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "photo = open_image(data, max_side=768)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(photo.size, (after - before) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    size, grown_mb = done.stdout.split(")")
    assert size.strip() == "(768, 768"
    frame_mb = side * side * 2 / 2**20  # the decoded 16-bit frame, unavoidable
    assert int(grown_mb) <= frame_mb + 120, f"peak grew by {grown_mb} MB for a {frame_mb:.0f} MB frame"
