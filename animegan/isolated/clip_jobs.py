"""The clip jobs a decoding worker runs: frames out of an untrusted clip, and its sound onto
ours. Both read the upload, so both run where a crafted container cannot touch the server.

`clip` streams: first the `ClipInfo`, then each frame (fitted like a photo) with its
time and duration as exact fractions. The worker decodes the next frame while the server
runs the model on this one, and blocks once a frame is waiting on the socket, so neither
side holds more than a frame or two. `clip_from` and `frame_from` read the replies back.
"""

from __future__ import annotations

from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

from animegan.isolated.wire import Job, Reply, decode_image, encode_image
from animegan.video import ClipFrame, ClipInfo, ClipLimits, mux_audio, open_clip
from animegan.video.sniff import ClipKind


def clip(args: dict[str, Any], payloads: list[bytes]) -> Any:
    """The clip's info, then its frames fitted to `max_side`."""
    source = payloads[0] if payloads else Path(str(args["path"]))
    limits = ClipLimits(**args.get("limits", {}))
    with open_clip(source, limits=limits, subject=args.get("subject")) as opened:
        yield Reply({"info": _info_json(opened.info)})
        for frame in opened.frames(args.get("max_side")):
            picture, pixels = encode_image(frame.image)
            timing = {
                "index": frame.index,
                "time": _fraction(frame.time),
                "duration": _fraction(frame.duration),
            }
            yield Reply({"frame": timing, "picture": picture}, [pixels])


def audio(args: dict[str, Any], payloads: list[bytes]) -> Reply:
    """`mux_audio`: the server's video-only MP4 with the source's sound, written to `out`."""
    had = mux_audio(
        Path(str(args["video"])),
        Path(str(args["source"])),
        Path(str(args["out"])),
        start=_from_fraction(args["start"]),
        limits=ClipLimits(**args.get("limits", {})),
        subject=args.get("subject"),
    )
    return Reply({"audio": had})


def info_from(header: dict[str, Any]) -> ClipInfo:
    """The `ClipInfo` a `clip` job sent first, checked."""
    info = header.get("info")
    if not isinstance(info, dict):
        raise ValueError("no clip info")
    kind: ClipKind = info["kind"]
    if kind not in ("mp4", "matroska", "gif", "webp"):
        raise ValueError(f"bad clip kind {kind!r}")
    return ClipInfo(
        kind=kind,
        codec=str(info["codec"]),
        width=_positive(info["width"]),
        height=_positive(info["height"]),
        frames=None if info["frames"] is None else _positive(info["frames"]),
        duration=_optional_fraction(info["duration"]),
        frame_rate=_optional_fraction(info["frame_rate"]),
        rotation=int(info["rotation"]) if info["rotation"] in (0, 90, 180, 270) else 0,
        start=_from_fraction(info["start"]),
        audio=None if info["audio"] is None else str(info["audio"]),
        loop=None if info["loop"] is None else int(info["loop"]),
    )


def frame_from(header: dict[str, Any], payloads: list[bytes]) -> ClipFrame:
    """A frame a `clip` job sent, checked."""
    timing = header.get("frame")
    if not isinstance(timing, dict) or not payloads:
        raise ValueError("not a frame")
    image = decode_image(header.get("picture"), payloads[0]).convert("RGB")
    index = timing["index"]
    if type(index) is not int or index < 0:
        raise ValueError(f"bad frame index {index!r}")
    duration = _from_fraction(timing["duration"])
    if duration <= 0:
        raise ValueError("a frame must last")
    return ClipFrame(image, index, _from_fraction(timing["time"]), duration)


def _info_json(info: ClipInfo) -> dict[str, Any]:
    fields = asdict(info)
    for name in ("duration", "frame_rate", "start"):
        value = fields[name]
        fields[name] = None if value is None else _fraction(value)
    return fields


def _fraction(value: Fraction) -> list[int]:
    return [value.numerator, value.denominator]


def _from_fraction(value: Any) -> Fraction:
    if (
        not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value))
        or value[1] <= 0
    ):
        raise ValueError(f"bad fraction {value!r}")
    return Fraction(value[0], value[1])


def _optional_fraction(value: Any) -> Fraction | None:
    return None if value is None else _from_fraction(value)


def _positive(value: Any) -> int:
    if type(value) is not int or value <= 0:
        raise ValueError(f"bad size {value!r}")
    return value


JOBS: dict[str, Job] = {"clip": clip, "audio": audio}
