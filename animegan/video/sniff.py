"""What kind of clip a file is, from its first bytes, before any decoder sees it.

The kind picks the one demuxer (or Pillow plugin) that may read the file: FFmpeg is never
asked to guess among its hundreds of formats, some of which open further files or URLs
(HLS playlists, concat lists). Anything else is refused with a sentence that says what
the file looks like instead (a photo, or not a clip at all).
"""

from __future__ import annotations

from typing import Literal

from animegan.errors import VideoError

#: ``mp4`` covers MP4, MOV and 3GP (ISO base media); ``matroska`` covers WebM and MKV.
ClipKind = Literal["mp4", "matroska", "gif", "webp"]

#: Enough of the file to tell every kind apart.
SNIFF_BYTES = 32

FORMATS = "an MP4, MOV or WebM video, or an animated GIF or WebP"
FORMATS_HINT = f"please upload {FORMATS}"

# The top-level boxes an ISO media file (MP4, MOV, 3GP) may start with; 'ftyp' in all
# current files, the others in QuickTime files from older cameras.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
# ISO media brands of pictures rather than clips: HEIF and AVIF photos and bursts.
_PICTURE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")
_PHOTO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")


def webp_canvas(head: bytes) -> tuple[int, int] | None:
    """The canvas size an animated WebP declares in its VP8X header (fixed 24-bit fields), read
    before libwebp allocates that canvas; None without the header (a still WebP)."""
    if head[12:16] != b"VP8X" or len(head) < 30:
        return None
    return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1


def sniff(head: bytes, subject: str) -> ClipKind:
    """The kind of the file whose first bytes are ``head``; `VideoError` if it is not a clip."""
    if not head:
        raise VideoError(f"{subject} is empty (0 bytes); please choose a clip and upload it again.", "empty")
    if head[4:8] in _ISO_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _PICTURE_BRANDS:
            raise VideoError(
                f"{subject} is a HEIF or AVIF picture, not a video; {FORMATS_HINT}.", "unsupported"
            )
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(_PHOTO_MAGIC):
        raise VideoError(
            f"{subject} is a photo, not a video; stylize it as a photo instead, or upload {FORMATS}.",
            "still_image",
        )
    raise VideoError(f"{subject} is not a video we can read; {FORMATS_HINT}.", "not_video")
