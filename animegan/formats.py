"""What a file is, from its first bytes: the check that runs before any parser sees it.

Pillow picks a decoder by asking each plugin whether it accepts the file, so a file that
merely claims to be a photo reaches a parser anyway; every parser is attack surface. Here
an upload is named by its magic bytes alone, and only the photo formats go on to be
decoded, each by the one plugin that its signature names. No imports beyond the standard
library: the server calls this on every upload before handing the file to a worker.
"""

from __future__ import annotations

#: Pillow's names for the photo formats an upload may be in. ("JPEG" includes MPO, the
#: multi-picture JPEG some phones write: Pillow opens those with its JPEG-derived plugin.)
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")

#: How many leading bytes `sniff` needs.
HEAD_BYTES = 64

#: ISO base media ("ftyp") brands of still pictures, by the Pillow format that reads them.
_IMAGE_BRANDS = {b"avif": "AVIF", b"heic": "HEIF", b"heix": "HEIF", b"heim": "HEIF", b"mif1": "HEIF"}
#: The sizes a BMP's info header can have (BITMAPCOREHEADER ... BITMAPV5HEADER).
_BMP_HEADERS = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff(head: bytes) -> str | None:
    """The format of a file whose first bytes are `head` (at least `HEAD_BYTES` of them when
    the file is that long): one of `PHOTO_FORMATS`, "MP4" (ISO media, QuickTime included),
    "MATROSKA" (WebM included), or None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "BMP"
    if head[4:8] == b"ftyp":
        return _iso_media(head)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "MATROSKA"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):  # QuickTime without ftyp
        return "MP4"
    return None


def is_photo(fmt: str | None) -> bool:
    return fmt in PHOTO_FORMATS


def _iso_media(head: bytes) -> str:
    """A still picture (AVIF, HEIF: an AVIF brand wins over "mif1") or else a clip, from the
    major and compatible brands."""
    box = int.from_bytes(head[:4], "big")
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(box, len(head)) - 3, 4)}
    if b"avif" in brands:
        return "AVIF"
    return next((_IMAGE_BRANDS[brand] for brand in brands if brand in _IMAGE_BRANDS), "MP4")


def webp_canvas(head: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP declares in its first chunk (VP8X, VP8 or VP8L), or None when
    that cannot be read: wanted before `Image.open`, since libwebp allocates the canvas (two
    of them, for an animation) as soon as the file is opened."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8 " and len(head) >= 30:
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None
