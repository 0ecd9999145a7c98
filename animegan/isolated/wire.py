"""How results travel from a worker: a `Reply` of a JSON header and raw payloads, and
pictures as their raw pixels, checked against their header before they are used."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image

from animegan.isolated.protocol import Message

#: The modes pictures travel in, and their bytes per pixel.
MODES = {"L": 1, "RGB": 3, "RGBA": 4}


#: What a job answers: a protocol message (JSON header, raw payloads).
Reply = Message


#: A job: the request's JSON arguments and raw payloads in, one reply or a stream of them out.
Job = Callable[[dict[str, Any], list[bytes]], "Reply | Iterator[Reply]"]


def encode_image(image: Image.Image) -> tuple[dict[str, Any], bytes]:
    if image.mode not in MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return {"mode": image.mode, "size": list(image.size)}, image.tobytes()


def decode_image(header: Any, payload: bytes) -> Image.Image:
    """The picture a worker sent, after checking that the header and payload agree."""
    if not isinstance(header, dict):
        raise ValueError("picture header is not an object")
    mode, size = header.get("mode"), header.get("size")
    if mode not in MODES or not isinstance(size, list) or len(size) != 2:
        raise ValueError(f"bad picture header {header!r}")
    width, height = size
    sides_ok = all(type(side) is int and side > 0 for side in size)
    if not sides_ok or width * height * MODES[mode] != len(payload):
        raise ValueError(f"picture of {size} in {mode} does not match {len(payload)} bytes")
    return Image.frombuffer(mode, (width, height), payload, "raw", mode, 0, 1)
