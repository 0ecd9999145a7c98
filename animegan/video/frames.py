"""Frames in: an untrusted clip decoded one frame at a time, upright and fitted like a photo.

`open_clip` checks everything the headers tell (kind, size, streams, codec, pixels, frame
count, duration, rate), decodes the first frame (so a clip that cannot show a single frame
is refused before any work is spent on it, and its rotation is known), and returns a
`Clip`: its `ClipInfo`, and `Clip.frames(max_side)`, a generator that never holds more
than the frame it yields and the next one (whose timestamp gives the duration).

MP4, MOV and WebM are decoded by FFmpeg (PyAV). Animated GIF and WebP are decoded by
Pillow: FFmpeg in the PyAV wheel cannot decode animated WebP, and its GIF demuxer drops
the loop count; Pillow composites both as a browser shows them (disposal, blending,
transparency), and transparent pixels are shown on white, as on a plain page.

Policy for damaged clips: a packet that fails to decode is skipped and the frame before it
stays on screen until the next good one (its duration grows), as a player does, up to
`MAX_BROKEN_SHARE` of the packets; beyond that, or when no frame decodes, the clip is
refused. A file cut short is refused: an indexed clip (MP4) when it is opened, one
without an index (a Matroska file) when its frames end well before its declared duration.
A frame whose timestamp does not advance is dropped (no player shows it either).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Protocol

import av
import av.container
import av.stream
import av.video
from PIL import Image, UnidentifiedImageError

from animegan.errors import VideoError
from animegan.formats import webp_canvas
from animegan.intake import REDUCING_GAP, fitted_size
from animegan.pixels import SWAPPING, upright
from animegan.video.limits import (
    DECODE_THREADS,
    FAST_FRAME_MS,
    MAX_BROKEN_SHARE,
    MIN_BROKEN_FORGIVEN,
    SLOW_FRAME_MS,
    ClipLimits,
)
from animegan.video.sniff import FORMATS, FORMATS_HINT, SNIFF_BYTES, ClipKind
from animegan.video.source import (
    ClipSource,
    codec_name,
    damaged,
    open_container,
    open_source,
    subject_of,
    too_complex,
    truncated,
)

#: The video codecs a phone, camera, browser or editor writes; FFmpeg decodes hundreds more,
#: each of them attack surface a demo does not need.
VIDEO_CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "prores")
#: Where transparent pixels of an animated image are shown: a plain page's white.
BACKGROUND = (255, 255, 255)
#: Matroska has no index to check up front: frames ending this much short of the declared
#: duration mean the file was cut. Generous, because the duration is the longest track's
#: (sound may run on a little) and a refusal comes after every frame was read.
TRUNCATED_SHORTFALL = (0.25, Fraction(1))  # a share of the duration, and at least this many seconds

# EXIF-style orientation for each display rotation (degrees counterclockwise).
_ORIENTATION = {0: 1, 90: 8, 180: 3, 270: 6}


@dataclass(frozen=True)
class ClipInfo:
    """What is known of a clip once it is open (its first frame decoded).

    ``width`` x ``height`` is the picture as shown (rotation applied), before any fit.
    ``frames`` is exact for MP4, GIF and WebP, estimated from the duration for Matroska,
    None when unknown. ``duration`` (seconds) is the header's, None where only decoding
    tells it (animated images, live-recorded WebM). ``rotation`` is how far the frames are
    turned counterclockwise to show them upright. ``start`` is the first frame's timestamp
    in the source: frame times count from it, and `mux_audio` aligns the sound to it.
    ``audio`` names the audio codec (None: silent). ``loop`` is an animated image's loop
    count (0: forever; None: played once, or not an animated image).
    """

    kind: ClipKind
    codec: str
    width: int
    height: int
    frames: int | None
    duration: Fraction | None
    frame_rate: Fraction | None
    rotation: int
    start: Fraction
    audio: str | None
    loop: int | None


@dataclass(frozen=True)
class ClipFrame:
    """One frame: RGB, upright, fitted; ``time`` counts from the first frame; seconds."""

    image: Image.Image
    index: int
    time: Fraction
    duration: Fraction


@dataclass(frozen=True)
class _Decoded:
    """A decoded frame before fitting: RGB in the file's orientation, its time and duration."""

    image: Image.Image
    time: Fraction
    duration: Fraction


class _Decoder(Protocol):
    info: ClipInfo

    def decoded(self) -> Iterator[_Decoded]: ...

    def close(self) -> None: ...


class Clip:
    """An opened clip: `info`, and its frames (once) through `frames`. Close it, or use ``with``."""

    def __init__(self, decoder: _Decoder, limits: ClipLimits, subject: str) -> None:
        self._decoder = decoder
        self._limits = limits
        self._subject = subject
        self.info = decoder.info
        self._started = False

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._decoder.close()

    def frames(self, max_side: int | None) -> Iterator[ClipFrame]:
        """The frames in presentation order, each fitted to ``max_side`` like `Photo.fit`
        (None: full size) and turned upright. Raises `VideoError` when a limit is passed
        mid-way (a header can lie) or the clip turns out damaged."""
        if self._started:
            raise RuntimeError("a clip's frames can be read only once; open it again")
        self._started = True
        info = self.info
        orientation = _ORIENTATION[info.rotation]
        shown = fitted_size((info.width, info.height), max_side)
        stored = shown[::-1] if orientation in SWAPPING else shown
        for index, frame in enumerate(self._decoder.decoded()):
            if index >= self._limits.max_frames:
                raise too_many_frames(self._subject, self._limits)
            if frame.time >= self._limits.max_duration:
                raise too_long(self._subject, self._limits)
            # Built in the yield itself: a local would keep the frame alive while the caller has it.
            yield ClipFrame(_shown(frame.image, stored, orientation), index, frame.time, frame.duration)


def _shown(image: Image.Image, stored: tuple[int, int], orientation: int) -> Image.Image:
    """``image`` resized to ``stored`` as `Photo.fit` resizes, then turned upright."""
    if image.size != stored:
        image = image.resize(stored, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return upright(image, orientation)


def open_clip(src: ClipSource, *, limits: ClipLimits | None = None, subject: str | None = None) -> Clip:
    """Open a clip (path or bytes) for reading; `VideoError` (with ``reason``) if it is not
    a usable clip or breaks a limit. Decodes the first frame, nothing more. ``subject``
    names the clip in messages (default: by its file name)."""
    limits = limits or ClipLimits()
    subject = subject_of(src, subject)
    fileobj, size, kind = open_source(src, limits, subject)
    try:
        decoder: _Decoder
        if kind in ("gif", "webp"):
            decoder = _AnimatedImage(fileobj, kind, limits, subject)
        else:
            decoder = _FFmpegClip(fileobj, size, kind, limits, subject)
    except BaseException:
        fileobj.close()
        raise
    return Clip(decoder, limits, subject)


def probe(src: ClipSource, *, limits: ClipLimits | None = None, subject: str | None = None) -> ClipInfo:
    """`ClipInfo` of a clip, with all of `open_clip`'s checks."""
    with open_clip(src, limits=limits, subject=subject) as clip:
        return clip.info


class _FFmpegClip:
    """MP4/MOV and Matroska/WebM through FFmpeg's demuxer and decoder."""

    def __init__(self, fileobj: IO[bytes], size: int, kind: ClipKind, limits: ClipLimits, subject: str):
        self._fileobj = fileobj
        self._limits = limits
        self._subject = subject
        self._container = open_container(fileobj, kind, limits, subject)
        try:
            self._stream = stream = self._video_stream()
            declared = _declared(self._container, stream)
            _check_declared(declared, limits, subject)
            if _cut_short(stream, size):
                raise truncated(subject)
            context = stream.codec_context
            context.options = {"max_pixels": str(limits.max_pixels)}
            context.thread_type = "AUTO"
            context.thread_count = DECODE_THREADS
            for other in self._container.streams:
                if other.index != stream.index:
                    other.discard = av.stream.Discard.all  # the demuxer skips their packets
            self._packets = 0
            self._broken = 0
            self._frames = self._decoded_frames()
            first = next(self._frames, None)
            if first is None:
                raise (damaged(subject) if self._packets else no_frames(subject))
            self._first: av.VideoFrame | None = first
            start = _seconds(first) or Fraction(0)
            rotation = round(first.rotation / 90) * 90 % 360
            width, height = first.width, first.height
            if rotation in (90, 270):
                width, height = height, width
            frames, duration, rate = declared
            sound = [codec_name(s.codec_context) for s in self._container.streams.audio]
            self.info = ClipInfo(
                kind=kind,
                codec=codec_name(context),
                width=width,
                height=height,
                frames=frames,
                duration=duration,
                frame_rate=rate,
                rotation=rotation,
                start=start,
                audio=sound[0] if sound else None,
                loop=None,
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._first = None
        self._container.close()
        self._fileobj.close()

    def _video_stream(self) -> av.video.stream.VideoStream:
        cover_art = av.stream.Disposition.attached_pic
        videos = [s for s in self._container.streams.video if not s.disposition & cover_art]
        if not videos:
            what = "only sound" if self._container.streams.audio else "no picture"
            raise VideoError(f"{self._subject} has no video track ({what}); {FORMATS_HINT}.", "no_video")
        stream = videos[0]
        context = stream.codec_context
        name = codec_name(context)
        if context is None or name not in VIDEO_CODECS:
            raise VideoError(
                f"{self._subject} uses the {name} video codec, which is not supported; please export "
                "it as H.264 (MP4) or VP9 (WebM).",
                "unsupported",
            )
        _check_pixels(context.width, context.height, self._limits, self._subject)
        return stream

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames, skipping packets that fail to decode (within the broken share)."""
        try:
            for packet in self._container.demux(self._stream):
                if packet.size:
                    self._packets += 1
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    self._broken += 1
                    if self._broken > max(MIN_BROKEN_FORGIVEN, MAX_BROKEN_SHARE * self._packets):
                        raise damaged(self._subject) from None
                    continue
                for frame in frames:
                    if frame.width * frame.height > self._limits.max_pixels:
                        raise too_large(self._subject, frame.width, frame.height, self._limits)
                    yield frame
        except av.error.ExitError as exc:
            raise too_complex(self._subject) from exc
        except (av.error.FFmpegError, EOFError, OSError) as exc:
            raise damaged(self._subject) from exc

    def decoded(self) -> Iterator[_Decoded]:
        """Frames with durations (the next frame's timestamp minus this one's), so one ahead."""
        first, self._first = self._first, None
        if first is None:
            raise RuntimeError("the clip's frames were read already")
        origin = self.info.start
        nominal = 1 / self.info.frame_rate if self.info.frame_rate else Fraction(1, 30)
        pending, pending_time = first, Fraction(0)
        for frame in self._frames:
            when = _seconds(frame)
            time = pending_time + nominal if when is None else when - origin
            if time <= pending_time:
                continue
            yield _Decoded(_rgb(pending), pending_time, time - pending_time)
            pending, pending_time = frame, time
        last = _frame_duration(pending) or nominal
        end = pending_time + last
        yield _Decoded(_rgb(pending), pending_time, last)
        duration = self.info.duration
        if duration is not None and self.info.kind == "matroska":
            share, at_least = TRUNCATED_SHORTFALL
            if end < duration - max(Fraction(share) * duration, at_least):
                raise truncated(self._subject)


def _rgb(frame: av.VideoFrame) -> Image.Image:
    """The frame as RGB, converted by the frame's own colour tags (BT.601 when untagged)."""
    return Image.fromarray(frame.to_ndarray(format="rgb24"), "RGB")


def _seconds(frame: av.VideoFrame) -> Fraction | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return frame.pts * frame.time_base


def _frame_duration(frame: av.VideoFrame) -> Fraction | None:
    if not frame.duration or frame.time_base is None:
        return None
    return frame.duration * frame.time_base


def _declared(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[int | None, Fraction | None, Fraction | None]:
    """Frame count, duration (seconds) and frame rate, as far as the headers tell them."""
    duration: Fraction | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = stream.duration * stream.time_base
    elif container.duration is not None:
        duration = Fraction(container.duration, av.time_base)
    # The measured average only: FFmpeg's guess falls back to the time base's 1000 per second.
    rate = Fraction(stream.average_rate) if stream.average_rate else None
    frames: int | None = stream.frames or None
    if frames is None and duration is not None and rate is not None:
        frames = round(duration * rate)
    return frames, duration, rate


def _check_declared(
    declared: tuple[int | None, Fraction | None, Fraction | None], limits: ClipLimits, subject: str
) -> None:
    frames, duration, rate = declared
    if duration is not None and duration > limits.max_duration:
        raise too_long(subject, limits, duration)
    if frames is not None and frames > limits.max_frames:
        raise too_many_frames(subject, limits, frames)
    if rate is not None and rate > limits.max_frame_rate:
        raise VideoError(
            f"{subject} has {float(rate):.0f} frames per second, more than the "
            f"{limits.max_frame_rate:g} allowed; please export it at 30 frames per second.",
            "frame_rate",
        )


def _cut_short(stream: av.video.stream.VideoStream, size: int) -> bool:
    """Whether the clip's index (MP4's sample table, Matroska's cues) points past the file's end."""
    entries = stream.index_entries
    if not entries:
        return False
    last = entries[len(entries) - 1]
    return bool(last.pos + last.size > size)


def _check_pixels(width: int, height: int, limits: ClipLimits, subject: str) -> None:
    if width <= 0 or height <= 0:
        raise damaged(subject)
    if width * height > limits.max_pixels:
        raise too_large(subject, width, height, limits)
    if min(width, height) < limits.min_side:
        raise VideoError(
            f"{subject} is only {width}x{height} pixels; each side must be at least "
            f"{limits.min_side} pixels.",
            "too_small",
        )
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise VideoError(
            f"{subject} is {width}x{height} pixels, too long and thin to stylize "
            f"(at most {limits.max_aspect:g}:1); please crop it.",
            "bad_aspect",
        )


class _AnimatedImage:
    """Animated GIF and WebP through Pillow, composited on `BACKGROUND` as a browser shows them."""

    def __init__(self, fileobj: IO[bytes], kind: ClipKind, limits: ClipLimits, subject: str) -> None:
        self._fileobj = fileobj
        self._subject = subject
        fmt = "GIF" if kind == "gif" else "WEBP"
        canvas = webp_canvas(fileobj.read(SNIFF_BYTES)) if kind == "webp" else None
        fileobj.seek(0)
        if canvas is not None:  # libwebp allocates the whole canvas when it is opened
            _check_pixels(*canvas, limits, subject)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                self._image = Image.open(fileobj, formats=(fmt,))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
            raise VideoError(
                f"{subject} has far too many pixels per frame to process safely; please make it smaller.",
                "too_large",
            ) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as exc:
            raise damaged(subject) from exc
        try:
            width, height = self._image.size
            _check_pixels(width, height, limits, subject)
            try:
                frames = int(getattr(self._image, "n_frames", 1))  # GIF: a scan of block headers
            except (OSError, SyntaxError, EOFError, ValueError) as exc:
                raise damaged(subject) from exc
            if frames < 2:
                raise VideoError(
                    f"{subject} is a still picture, not an animation; stylize it as a photo instead, "
                    f"or upload {FORMATS}.",
                    "still_image",
                )
            if frames > limits.max_frames:
                raise too_many_frames(subject, limits, frames)
            loop = self._image.info.get("loop")
            self._decoded = self._frames(frames)
            self._first: _Decoded | None = next(self._decoded)
            self.info = ClipInfo(
                kind=kind,
                codec=fmt.lower(),
                width=width,
                height=height,
                frames=frames,
                duration=None,
                frame_rate=None,
                rotation=0,
                start=Fraction(0),
                audio=None,
                loop=int(loop) if loop is not None else None,
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._image.close()
        self._fileobj.close()

    def decoded(self) -> Iterator[_Decoded]:
        first, self._first = self._first, None
        if first is None:
            raise RuntimeError("the clip's frames were read already")
        yield first
        yield from self._decoded

    def _frames(self, count: int) -> Iterator[_Decoded]:
        time = Fraction(0)
        for index in range(count):
            try:
                self._image.seek(index)
                self._image.load()
            except (OSError, SyntaxError, EOFError, ValueError) as exc:
                cut = "truncated" in str(exc)
                raise (truncated(self._subject) if cut else damaged(self._subject)) from exc
            milliseconds = int(self._image.info.get("duration") or 0)
            if milliseconds <= FAST_FRAME_MS:
                milliseconds = SLOW_FRAME_MS
            duration = Fraction(milliseconds, 1000)
            yield _Decoded(_on_background(self._image), time, duration)
            time += duration


def _on_background(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    rgba = image.convert("RGBA")
    shown = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    shown.alpha_composite(rgba)
    return shown.convert("RGB")


def no_frames(subject: str) -> VideoError:
    return VideoError(f"{subject} has a video track with no frames in it; {FORMATS_HINT}.", "no_video")


def too_large(subject: str, width: int, height: int, limits: ClipLimits) -> VideoError:
    return VideoError(
        f"{subject} is {width}x{height} pixels, more than the {limits.max_pixels:,} pixels per frame "
        "allowed; please export it at 1080p.",
        "too_large",
    )


def too_long(subject: str, limits: ClipLimits, duration: Fraction | None = None) -> VideoError:
    length = f"{float(duration):.1f} seconds long" if duration is not None else "longer than allowed"
    return VideoError(
        f"{subject} is {length}; clips of up to {limits.max_duration:g} seconds are accepted, "
        "please trim it.",
        "too_long",
    )


def too_many_frames(subject: str, limits: ClipLimits, frames: int | None = None) -> VideoError:
    count = f"{frames:,} frames" if frames is not None else "more frames than allowed"
    return VideoError(
        f"{subject} has {count}; clips of up to {limits.max_frames:,} frames are accepted, "
        "please trim it or lower its frame rate.",
        "too_many_frames",
    )
