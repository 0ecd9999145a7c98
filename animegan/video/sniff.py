"""What kind of clip a file is, from its first bytes, before any decoder sees it.

The kind picks the one demuxer (or Pillow plugin) that may read the file: FFmpeg is never
asked to guess among its hundreds of formats, some of which open further files or URLs
(HLS playlists, concat lists). Anything else is refused with a sentence that says what
the file looks like instead (a photo, or not a clip at all).
"""

from __future__ import annotations

from typing import Literal

from animegan import formats
from animegan.errors import VideoError
from animegan.formats import HEAD_BYTES

#: ``mp4`` covers MP4, MOV and 3GP (ISO base media); ``matroska`` covers WebM and MKV.
ClipKind = Literal["mp4", "matroska", "gif", "webp"]

#: Enough of the file to tell every kind apart.
SNIFF_BYTES = HEAD_BYTES

FORMATS = "an MP4, MOV or WebM video, or an animated GIF or WebP"
FORMATS_HINT = f"please upload {FORMATS}"

_KINDS: dict[str, ClipKind] = {"MP4": "mp4", "MATROSKA": "matroska", "GIF": "gif", "WEBP": "webp"}


def sniff(head: bytes, subject: str) -> ClipKind:
    """The kind of the file whose first bytes are ``head`` (`animegan.formats.sniff`, the
    same naming the photo path uses); `VideoError` if it is not a clip."""
    if not head:
        raise VideoError(f"{subject} is empty (0 bytes); please choose a clip and upload it again.", "empty")
    fmt = formats.sniff(head)
    if fmt in _KINDS:
        return _KINDS[fmt]
    if fmt in ("AVIF", "HEIF"):
        raise VideoError(f"{subject} is a HEIF or AVIF picture, not a video; {FORMATS_HINT}.", "unsupported")
    if fmt is not None:
        raise VideoError(
            f"{subject} is a photo, not a video; stylize it as a photo instead, or upload {FORMATS}.",
            "still_image",
        )
    raise VideoError(f"{subject} is not a video we can read; {FORMATS_HINT}.", "not_video")
