"""Small files crafted to make a naive decoder work hard: the tests and `bench/bench_hostile.py`
upload them. Each is built byte by byte, so no encoder smooths away what makes it hostile."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable


def multipage_tiff(pages: int) -> bytes:
    """A TIFF of `pages` 16 x 16 grey pages sharing one strip: about 130 bytes a page."""
    entries = [  # tag, type (3 short, 4 long), value; StripOffsets is patched in below
        (256, 3, 16),
        (257, 3, 16),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 0),
        (277, 3, 1),
        (278, 3, 16),
        (279, 4, 256),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip = 8
    first_ifd = strip + 256
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd) + bytes(range(256)))
    for page in range(pages):
        offset = first_ifd + page * ifd_size
        following = offset + ifd_size if page < pages - 1 else 0
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            value = strip if tag == 273 else value
            out += struct.pack("<HHI", tag, kind, 1) + (
                struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            )
        out += struct.pack("<I", following)
    return bytes(out)


def exif_with_description(size: int) -> bytes:
    """EXIF holding an orientation tag and an ImageDescription of `size` bytes."""
    text = b"x" * size
    header = b"II*\x00" + struct.pack("<I", 8)
    entries = 2
    data_offset = 8 + 2 + 12 * entries + 4
    ifd = struct.pack("<H", entries)
    ifd += struct.pack("<HHII", 0x010E, 2, len(text), data_offset)  # ImageDescription
    ifd += struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)  # Orientation = 6
    ifd += struct.pack("<I", 0)
    return header + ifd + text


def png_with_chunks(count: int) -> bytes:
    """A valid 16 x 16 PNG with `count` empty private ancillary chunks before its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress((b"\x00" + bytes(16)) * 16))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"prVt", b"") * count + pixels + chunk(b"IEND", b"")


def _tiff(entries: list[tuple[int, int, int, bytes]], width: int = 16, height: int = 16) -> bytes:
    """A little-endian TIFF of one 16 x 16 grey strip plus `entries` (tag, type, count,
    data): values of more than four bytes are stored after the strip and pointed to."""
    type_sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 11: 4, 12: 8}
    strip = bytes(range(256))
    blobs = bytearray()
    base = 8 + len(strip)
    laid_out = []
    for tag, kind, count, data in entries:
        if count * type_sizes[kind] > 4:
            laid_out.append((tag, kind, count, struct.pack("<I", base + len(blobs))))
            blobs += data
            if len(blobs) % 2:
                blobs += b"\x00"
        else:
            laid_out.append((tag, kind, count, data.ljust(4, b"\x00")))
    basic = [
        (256, 3, 1, struct.pack("<HH", width, 0)),
        (257, 4, 1, struct.pack("<I", height)),
        (258, 3, 1, struct.pack("<HH", 8, 0)),
        (259, 3, 1, struct.pack("<HH", 1, 0)),
        (262, 3, 1, struct.pack("<HH", 1, 0)),
        (277, 3, 1, struct.pack("<HH", 1, 0)),
    ]
    tags = {tag for tag, *_ in laid_out}
    if 273 not in tags:
        basic += [
            (273, 4, 1, struct.pack("<I", 8)),
            (278, 4, 1, struct.pack("<I", height)),
            (279, 4, 1, struct.pack("<I", len(strip))),
        ]
    ifd_entries = sorted(basic + laid_out)
    ifd_offset = base + len(blobs)
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset) + strip + blobs)
    out += struct.pack("<H", len(ifd_entries))
    for tag, kind, count, value in ifd_entries:
        out += struct.pack("<HHI", tag, kind, count) + value
    return bytes(out + struct.pack("<I", 0))


def tiff_with_long_tag(values: int) -> bytes:
    """A 16 x 16 TIFF whose XResolution holds `values` RATIONALs (8 bytes each), which
    Pillow parses one by one in Python inside `Image.open`, holding the GIL."""
    return _tiff([(282, 5, values, struct.pack("<II", 72, 1) * values)])


def tiff_with_strips(rows: int) -> bytes:
    """A TIFF 16 pixels wide and `rows` high in one-row strips: two arrays of `rows` LONGs
    that `Image.open` reads and converts before any size check can refuse the picture."""
    offsets = struct.pack("<I", 8) * rows
    counts = struct.pack("<I", 16) * rows
    return _tiff(
        [(273, 4, rows, offsets), (278, 4, 1, struct.pack("<I", 1)), (279, 4, rows, counts)],
        height=rows,
    )


def tiff_with_sample_formats(count: int) -> bytes:
    """A 16 x 16 TIFF whose SampleFormat tag holds `count` SHORTs."""
    return _tiff([(339, 3, count, struct.pack("<H", 1) * count)])


def gif_with_padding(padding_bytes: int) -> bytes:
    """A 16 x 16 GIF of two frames with `padding_bytes` of comment blocks between them:
    finding out whether it is animated reads through all of them."""
    import io

    from PIL import Image

    frames = [Image.new("P", (16, 16), index) for index in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    data = buffer.getvalue()
    second = data.index(b"\x21\xf9", data.index(b"\x21\xf9") + 1)  # the second frame's control block
    comments = b"\x21\xfe" + (b"\xff" + b"p" * 255) * max(1, padding_bytes // 256) + b"\x00"
    return data[:second] + comments + data[second:]


def padded(data_with_exif_slot: Callable[[bytes], bytes], size: int) -> bytes:
    """A file made by `data_with_exif_slot(exif)` with an EXIF block that brings it to about
    `size` bytes: metadata that makes a small picture look large to a bytes-based rule."""
    return data_with_exif_slot(b"Exif\x00\x00" + b"\x00" * max(0, size - 1000))
