"""Short clips made for the tests (and reusable by the service's tests and the bench).

Honest clips are encoded with PyAV from pictures drawn here (a still shot, a slow pan, a
cut, odd sizes, a portrait phone clip, sound as a tone), so a test knows what every frame
should look like. Hostile clips are built byte by byte (Matroska elements, MP4 boxes, a
VP8 frame header), so no encoder smooths away what makes them hostile.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

Picture = np.ndarray  # H x W x 3, uint8


# --- pictures -------------------------------------------------------------------------------


def scene(width: int, height: int, seed: int = 0) -> Picture:
    """A picture whose every region differs (gradients and discs), smooth enough that 4:2:0
    video keeps it well (about 40 dB), so decoded frames can be compared with it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    red = 128 + 90 * np.sin(xx / (width / 1.7) + phase[0])
    green = 128 + 90 * np.sin(yy / (height / 1.3) + phase[1])
    blue = 128 + 90 * np.sin((xx + yy) / ((width + height) / 2.9) + phase[2])
    picture = np.stack([red, green, blue], axis=-1)
    for _ in range(4):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.08, 0.2) * min(width, height)
        colour = rng.integers(0, 256, 3)
        inside = np.clip((radius - np.hypot(xx - cx, yy - cy)) / 6, 0, 1)[..., None]  # a soft edge
        picture = picture * (1 - inside) + colour * inside
    return np.clip(picture, 0, 255).astype(np.uint8)


def still_shot(count: int, size: tuple[int, int], seed: int = 0) -> list[Picture]:
    """The same picture ``count`` times (a tripod shot)."""
    picture = scene(*size, seed=seed)
    return [picture] * count


def slow_pan(count: int, size: tuple[int, int], step: int = 2, seed: int = 1) -> list[Picture]:
    """A camera panning right by ``step`` pixels a frame across a wider scene."""
    width, height = size
    wide = scene(width + step * count, height, seed=seed)
    return [wide[:, i * step : i * step + width] for i in range(count)]


def cut(count: int, size: tuple[int, int], seeds: tuple[int, int] = (2, 3)) -> list[Picture]:
    """Two still shots of different scenes, the cut halfway."""
    first, second = (scene(*size, seed=seed) for seed in seeds)
    return [first if i < count // 2 else second for i in range(count)]


def marked(size: tuple[int, int]) -> Picture:
    """Mid grey with a red block in the top-left corner, to see which way a picture is turned."""
    width, height = size
    picture = np.full((height, width, 3), 128, np.uint8)
    picture[: height // 3, : width // 3] = (230, 20, 20)
    return picture


def psnr(a: Image.Image | Picture, b: Image.Image | Picture) -> float:
    """Peak signal-to-noise ratio of two pictures of the same size, in dB (inf when equal)."""
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


# --- honest clips ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tone:
    """A sine tone as the clip's sound; ``changes`` switches its pitch at given times (s)."""

    codec: str = "aac"
    rate: int = 48_000
    layout: str = "stereo"
    frequency: float = 440.0
    changes: tuple[tuple[float, float], ...] = ()  # (time, new frequency)
    seconds: float | None = None  # None: as long as the video


def write_video(
    path: Path,
    pictures: Sequence[Picture],
    *,
    fps: Fraction | int = 24,
    codec: str = "libx264",
    sound: Tone | None = None,
    rotation: int | None = None,
    first_time: Fraction = Fraction(0),
    faststart: bool = True,
    options: dict[str, str] | None = None,
    pix_fmt: str | None = None,
) -> Path:
    """Encode ``pictures`` at ``fps`` into ``path`` (the container from its suffix: .mp4, .mov,
    .webm, .mkv); ``rotation`` writes a display matrix (degrees counterclockwise, as FFmpeg
    reports it: a portrait iPhone clip says -90); the first frame is shown at ``first_time``.
    ``pix_fmt`` is 4:2:0, or 4:4:4 for odd sizes (4:2:0 needs even sides). An MP4 or MOV has
    its index first with ``faststart``, else last (as phones write it). ``options`` go to the
    encoder (x264's ``{"g": "1"}``: every frame a key frame)."""
    fps = Fraction(fps)
    height, width = pictures[0].shape[:2]
    pix_fmt = pix_fmt or ("yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p")
    iso = path.suffix in (".mp4", ".mov")
    muxer = {"movflags": "+faststart"} if iso and faststart else {}
    with av.open(str(path), "w", options=muxer) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = 1 / fps
        context = stream.codec_context  # tagged BT.709, limited range, as phones tag HD video
        context.colorspace = context.color_primaries = context.color_trc = context.color_range = 1
        stream.options = {**_QUICK.get(codec, {}), **(options or {})}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio = None
        if sound is not None:
            audio = container.add_stream(sound.codec, rate=sound.rate)
            audio.layout = sound.layout
        offset = round(first_time * fps)
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts = offset + index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None and audio is not None:
            seconds = sound.seconds if sound.seconds is not None else float((offset + len(pictures)) / fps)
            write_tone(container, audio, sound, seconds)
    return path


_QUICK = {
    "libx264": {"crf": "14", "preset": "veryfast"},
    "libvpx": {"crf": "8", "b": "4M", "deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"},
}


def tone_samples(sound: Tone, seconds: float) -> np.ndarray:
    """The tone as float samples, one row per channel."""
    count = round(seconds * sound.rate)
    times = np.arange(count) / sound.rate
    frequency = np.full(count, sound.frequency)
    for when, new in sound.changes:
        frequency[times >= when] = new
    phase = 2 * np.pi * np.cumsum(frequency) / sound.rate
    channels = av.AudioLayout(sound.layout).nb_channels
    return np.repeat((0.4 * np.sin(phase))[None, :], channels, axis=0).astype(np.float32)


def write_tone(container, stream, sound: Tone, seconds: float) -> None:
    """Encode ``seconds`` of ``sound`` into the open ``stream`` of ``container``."""
    samples = tone_samples(sound, seconds)
    context = stream.codec_context
    resampler = av.AudioResampler(
        format=context.format, layout=sound.layout, rate=sound.rate, frame_size=context.frame_size or 1024
    )
    step = 4800
    for start in range(0, samples.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples[:, start : start + step]), format="fltp", layout=sound.layout
        )
        frame.sample_rate = sound.rate
        for chunk in resampler.resample(frame):
            container.mux(stream.encode(chunk))
    for chunk in resampler.resample(None):
        container.mux(stream.encode(chunk))
    container.mux(stream.encode(None))


def animated_gif(
    path: Path,
    pictures: Sequence[Picture],
    durations_ms: Sequence[int],
    *,
    loop: int | None = 0,
    transparent_corner: bool = False,
) -> Path:
    """An animated GIF (Pillow) with per-frame durations; with ``transparent_corner`` the
    top-left quarter of every frame is transparent."""
    frames = []
    for picture in pictures:
        frame = Image.fromarray(picture).quantize(255)
        if transparent_corner:
            height, width = picture.shape[:2]
            frame.paste(255, (0, 0, width // 2, height // 2))
        frames.append(frame)
    params: dict = {"save_all": True, "append_images": frames[1:], "duration": list(durations_ms)}
    params["disposal"] = 2
    if loop is not None:
        params["loop"] = loop
    if transparent_corner:
        params["transparency"] = 255
    frames[0].save(path, "GIF", **params)
    return path


def animated_webp(
    path: Path, pictures: Sequence[Picture], durations_ms: Sequence[int], *, loop: int = 0
) -> Path:
    frames = [Image.fromarray(picture) for picture in pictures]
    frames[0].save(
        path,
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=list(durations_ms),
        loop=loop,
        lossless=True,
    )
    return path


# --- hostile and broken clips ---------------------------------------------------------------


def vp8_keyframe(width: int, height: int, colour: tuple[int, int, int] = (40, 160, 90)) -> bytes:
    """One VP8 key frame (libvpx) of a flat colour."""
    context = av.CodecContext.create("libvpx", "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = Fraction(1, 30)
    picture = np.full((height, width, 3), colour, np.uint8)
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
    packets = context.encode(frame) + context.encode(None)
    return bytes(packets[0])


def declaring(keyframe: bytes, width: int, height: int) -> bytes:
    """``keyframe`` with the frame size in its header rewritten (14 bits per side)."""
    assert keyframe[3:6] == b"\x9d\x01\x2a", "not a VP8 key frame"
    return keyframe[:6] + struct.pack("<HH", width & 0x3FFF, height & 0x3FFF) + keyframe[10:]


def webm(
    frames: Sequence[bytes],
    size: tuple[int, int],
    *,
    fps: int = 30,
    duration_seconds: float | None = None,
    subtitle_tracks: int = 0,
) -> bytes:
    """A WebM file written element by element: one VP8 track of ``size`` (as the header
    declares it) holding ``frames`` (each a key frame), ``subtitle_tracks`` more tracks, and
    a Duration only when given (live recorders write none)."""
    header = _element(
        b"\x1a\x45\xdf\xa3",
        _uint(b"\x42\x86", 1)
        + _uint(b"\x42\xf7", 1)
        + _uint(b"\x42\xf2", 4)
        + _uint(b"\x42\xf3", 8)
        + _element(b"\x42\x82", b"webm")
        + _uint(b"\x42\x87", 2)
        + _uint(b"\x42\x85", 2),
    )
    info = (
        _uint(b"\x2a\xd7\xb1", 1_000_000) + _element(b"\x4d\x80", b"tests") + _element(b"\x57\x41", b"tests")
    )
    if duration_seconds is not None:
        info += _element(b"\x44\x89", struct.pack(">d", duration_seconds * 1000))
    video = _element(b"\xe0", _uint(b"\xb0", size[0]) + _uint(b"\xba", size[1]))
    tracks = _element(
        b"\xae",
        _uint(b"\xd7", 1) + _uint(b"\x73\xc5", 1) + _uint(b"\x83", 1) + _element(b"\x86", b"V_VP8") + video,
    )
    for number in range(2, subtitle_tracks + 2):
        tracks += _element(
            b"\xae",
            _uint(b"\xd7", number)
            + _uint(b"\x73\xc5", number)
            + _uint(b"\x83", 0x11)
            + _element(b"\x86", b"S_TEXT/UTF8"),
        )
    clusters = b"".join(  # one frame per cluster, each timed in milliseconds from the start
        _element(
            b"\x1f\x43\xb6\x75",
            _uint(b"\xe7", round(i * 1000 / fps)) + _element(b"\xa3", b"\x81\x00\x00\x80" + frame),
        )
        for i, frame in enumerate(frames)
    ) or _element(b"\x1f\x43\xb6\x75", _uint(b"\xe7", 0))  # an empty cluster: no frames at all
    segment = _element(b"\x15\x49\xa9\x66", info) + _element(b"\x16\x54\xae\x6b", tracks) + clusters
    return header + _element(b"\x18\x53\x80\x67", segment)


def _element(element_id: bytes, payload: bytes) -> bytes:
    return element_id + b"\x01" + len(payload).to_bytes(7, "big") + payload  # 8-byte size


def _uint(element_id: bytes, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def with_copied_tracks(mp4: bytes, copies: int) -> bytes:
    """``mp4`` with its last track box repeated ``copies`` more times inside its moov box."""
    out = bytearray()
    for kind, box in boxes(mp4):
        if kind == b"moov":
            children = boxes(box[8:])
            last_trak = next(child for kind_, child in reversed(children) if kind_ == b"trak")
            body = box[8:] + last_trak * copies
            box = struct.pack(">I", 8 + len(body)) + b"moov" + body
        out += box
    return bytes(out)


def boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level boxes of ISO media bytes: (type, the whole box)."""
    found, offset = [], 0
    while offset + 8 <= len(data):
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        assert size >= 8, "64-bit and to-the-end box sizes are not made by these helpers"
        found.append((data[offset + 4 : offset + 8], data[offset : offset + size]))
        offset += size
    return found


def sample_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, size) in the file of each video sample of an MP4, in decoding order."""
    with av.open(str(path)) as container:
        return [(entry.pos, entry.size) for entry in container.streams.video[0].index_entries]


def with_broken_samples(data: bytes, spans: Sequence[tuple[int, int]]) -> bytes:
    """``data`` with each span's first NAL length set to more than the sample holds: the
    decoder must reject that packet."""
    out = bytearray(data)
    for offset, _size in spans:
        out[offset : offset + 4] = b"\x7f\xff\xff\xff"
    return bytes(out)


def gif_with_canvas(width: int, height: int, frames: int = 2) -> bytes:
    """An animated GIF of ``frames`` 1 x 1 pixel frames on a ``width`` x ``height`` canvas:
    a few dozen bytes that ask a naive decoder for the whole canvas per frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"
    )
    return header + loop + frame * frames + b"\x3b"


def webp_with_canvas(width: int, height: int) -> bytes:
    """An animated WebP of three 40 x 30 frames whose canvas (VP8X header) claims ``width`` x ``height``."""
    frames = [Image.fromarray(picture) for picture in slow_pan(3, (40, 30))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"VP8X", "Pillow wrote no extended header"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)
