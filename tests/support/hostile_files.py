"""Small files crafted to make a naive decoder work hard: the tests and `bench/bench_hostile.py`
upload them. Each is built byte by byte, so no encoder smooths away what makes it hostile."""

from __future__ import annotations

import struct
import zlib


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
