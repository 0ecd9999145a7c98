"""Frames out: an MP4 (H.264) or an animated GIF, written one frame at a time.

The writers are fed our own stylized frames, never the untrusted source, so they may run
anywhere; the source's sound is added afterwards by `mux_audio`, which reads the upload
and therefore runs where decoding does.

MP4: libx264, yuv420p, tagged BT.709, ``+faststart`` (the index first, so a browser starts
playing before the whole file has arrived). Each frame keeps its timestamp and duration,
so the clip keeps its frame count, rate and length, also the uneven frame durations of a
GIF. No B-frames: every packet then carries its own frame's duration, which is what keeps
the last frame's duration and a variable frame rate exact in the MP4 index (with
reordering, the MP4 muxer would guess them from decode timestamps); the cost is a few
percent of file size. 4:2:0 needs even sides: an odd width or height gets one more column
or row, a copy of the edge, so no pixel is stretched or lost.

GIF: FFmpeg's GIF encoder with one palette per frame (Pillow's fast octree: on photos at
320 px within 0.5 dB of median cut, at 0.8 ms a frame instead of 42), durations in
hundredths of a second and the loop count kept. Unlike Pillow's GIF writer it streams
(Pillow's holds every frame until the end, and merges equal neighbours, which changes the
frame count).
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import av.container
import av.video
import numpy as np
from PIL import Image

from animegan.intake import REDUCING_GAP
from animegan.video.frames import ClipFrame

#: Constant quality; 18 is visually lossless for x264, and flat stylized frames stay small.
CRF = 18
#: x264's speed preset: "medium" encodes a 512 px frame in a few ms, far below the model's time.
PRESET = "medium"
#: The MP4's clock: 90 kHz divides every common frame rate (24, 25, 30000/1001, 60) and GIF's 1/100 s.
MP4_TIME_BASE = Fraction(1, 90_000)
#: GIF's clock is hundredths of a second ...
GIF_TIME_BASE = Fraction(1, 100)
#: ... and a frame of 10 ms or less is shown for 100 ms by browsers, so none is written shorter.
GIF_MIN_TICKS = 2

_BT709 = 1  # AVCOL_SPC_BT709, AVCOL_PRI_BT709, AVCOL_TRC_BT709
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: what players expect of H.264


W = TypeVar("W", bound="_Writer")


class _Writer:
    """Shared by both writers: lazy set-up at the first frame, partial files removed on failure."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._pending: dict[int, int] = {}  # pts -> duration of frames inside the encoder

    def __enter__(self: W) -> W:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Stop and remove what was written."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._container is None:
            if self.frames == 0:
                raise ValueError("a clip needs at least one frame")
            return
        try:
            self._mux(self._stream.encode(None))
            self._container.close()
        except BaseException:
            self.abort()  # a half-finished file (a full disk) must not pass for a clip
            raise
        self._container = None

    def _sized(self, image: Image.Image) -> Image.Image:
        """``image`` at the first frame's size (a stylizer's output may be a pixel off)."""
        if self._size is None:
            self._size = image.size
        if image.size != self._size:
            image = image.resize(self._size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        return image

    def _encode(self, frame: av.VideoFrame, pts: int, duration: int) -> None:
        frame.pts = pts
        frame.time_base = self._stream.codec_context.time_base
        self._pending[pts] = duration
        self._mux(self._stream.encode(frame))
        self.frames += 1

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self._container is not None
        for packet in packets:
            if packet.pts is not None:
                packet.duration = self._pending.pop(packet.pts, packet.duration)
            self._container.mux(packet)


class Mp4Writer(_Writer):
    """Writes an H.264 MP4 at ``path`` from frames given in order (``with`` closes it).

    ``frame_rate`` is the rate the stream declares (the source's); the frames' own times
    and durations decide when each is shown. None: one over the first frame's duration.
    """

    def __init__(self, path: str | Path, *, frame_rate: Fraction | None = None, crf: int = CRF) -> None:
        super().__init__(path)
        self.frame_rate = frame_rate
        self.crf = crf
        self._last_pts = -1

    def __enter__(self) -> Mp4Writer:
        return self

    def write(self, frame: ClipFrame) -> None:
        image = self._sized(frame.image.convert("RGB"))
        if self._container is None:
            self._start(image.size, frame.duration)
        start = max(round(frame.time / MP4_TIME_BASE), self._last_pts + 1)
        end = max(round((frame.time + frame.duration) / MP4_TIME_BASE), start + 1)
        self._last_pts = start
        picture = av.VideoFrame.from_ndarray(np.asarray(_even(image)), format="rgb24").reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
        )
        self._encode(picture, start, end - start)

    def _start(self, size: tuple[int, int], first_duration: Fraction) -> None:
        rate = self.frame_rate or (1 / first_duration if first_duration > 0 else Fraction(30))
        container = av.open(ffmpeg_path(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        stream = container.add_stream("libx264", rate=rate.limit_denominator(90_000))
        width, height = (side + side % 2 for side in size)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = MP4_TIME_BASE
        context = stream.codec_context
        context.time_base = MP4_TIME_BASE
        context.max_b_frames = 0
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = _LIMITED_RANGE
        stream.options = {"crf": str(self.crf), "preset": PRESET}
        self._container, self._stream = container, stream


class GifWriter(_Writer):
    """Writes an animated GIF at ``path``; ``loop``: 0 plays forever, None once, N as GIF says."""

    def __init__(self, path: str | Path, *, loop: int | None = 0) -> None:
        super().__init__(path)
        self.loop = loop
        self._end = 0

    def __enter__(self) -> GifWriter:
        return self

    def write(self, frame: ClipFrame) -> None:
        image = self._sized(frame.image.convert("RGB"))
        if self._container is None:
            self._start(image.size)
        start = max(round(frame.time / GIF_TIME_BASE), self._end)
        end = max(round((frame.time + frame.duration) / GIF_TIME_BASE), start + GIF_MIN_TICKS)
        self._end = end
        self._encode(_paletted(image), start, end - start)

    def _start(self, size: tuple[int, int]) -> None:
        loop = -1 if self.loop is None else self.loop  # the muxer's -1: no loop extension
        container = av.open(ffmpeg_path(self.path), "w", format="gif", options={"loop": str(loop)})
        stream = container.add_stream("gif", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "pal8"
        stream.time_base = GIF_TIME_BASE
        stream.codec_context.time_base = GIF_TIME_BASE
        self._container, self._stream = container, stream


def ffmpeg_path(path: Path) -> str:
    """``path`` as FFmpeg must be given it: absolute, so a name like ``a:b.mp4`` is not read as
    a protocol ("a:"), and a string, as ``+faststart`` reopens the file by name to move the index."""
    return str(path.absolute())


def _even(image: Image.Image) -> Image.Image:
    """``image`` with its last column and row repeated where a side is odd."""
    width, height = image.size
    if width % 2 == 0 and height % 2 == 0:
        return image
    pixels = np.asarray(image)
    padded = np.pad(pixels, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return Image.fromarray(padded, "RGB")


def _paletted(image: Image.Image) -> av.VideoFrame:
    """A pal8 frame with the picture's own 256-colour palette."""
    quantized = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    colours = np.array(quantized.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255  # ARGB, opaque
    palette[: len(colours), 1:] = colours
    pair = (np.asarray(quantized), palette)
    return av.VideoFrame.from_ndarray(pair, format="pal8")  # type: ignore[arg-type]  # the stub lacks pal8's pair
