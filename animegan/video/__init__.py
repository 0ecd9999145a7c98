"""Clips in and out, frame by frame: MP4/MOV, WebM and animated GIF/WebP.

No cache, no UI and no torch here: this package runs inside the worker processes that
decode untrusted uploads, so it must import fast and hold little.

- `open_clip` / `probe`: the checks (`limits`), then frames one at a time, upright and
  fitted like a photo (`frames`);
- `Mp4Writer`, `GifWriter`: our stylized frames out, streamed (`encode`);
- `mux_audio`: the source's sound onto a video-only MP4 (`audio`).

Errors are `VideoError`, whose message is a sentence for the user and whose ``reason``
says which check failed.
"""

from __future__ import annotations

from animegan.errors import VideoError
from animegan.video.audio import mux_audio
from animegan.video.encode import GifWriter, Mp4Writer
from animegan.video.frames import Clip, ClipFrame, ClipInfo, open_clip, probe
from animegan.video.limits import ClipLimits
from animegan.video.sniff import ClipKind
from animegan.video.source import ClipSource

__all__ = [
    "Clip",
    "ClipFrame",
    "ClipInfo",
    "ClipKind",
    "ClipLimits",
    "ClipSource",
    "GifWriter",
    "Mp4Writer",
    "VideoError",
    "mux_audio",
    "open_clip",
    "probe",
]
