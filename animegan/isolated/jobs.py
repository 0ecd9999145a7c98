"""The photo jobs a decoding worker runs (`preview`, `photo`), and their results read back.

Each job takes the request's JSON `args` and raw payloads (the file's bytes) and returns a
`Reply` (`wire`); `preview_from` and `photo_from` turn a reply back into the `Preview` and
`Photo` the server uses, checking it first: the worker is no more trusted than the file it
decoded.

Imported by the worker at start, before its memory limit is set, so everything a decode
needs is loaded once per worker and not per job.
"""

from __future__ import annotations

import os
from typing import Any

import pillow_heif
from PIL import AvifImagePlugin, Image

from animegan.errors import ImageError
from animegan.intake import Photo, Preview, open_image, open_preview
from animegan.isolated.wire import Job, Reply, decode_image, encode_image
from animegan.pixels import Frame
from animegan.safe_decode import limit_decode_memory

# One decoding thread each: a worker is one job at a time, and its threads would count
# against its memory cap and compete with the server for the cores.
AvifImagePlugin.DEFAULT_MAX_THREADS = 1
pillow_heif.options.DECODE_THREADS = 1

#: Share of the worker's memory cap a decode's estimated working set may take; the rest is
#: the file itself, the reduced copies and the reply.
DECODE_SHARE = 0.7

_memory_cap: int | None = None


def configure(memory_cap: int | None) -> None:
    """Set once by the worker: the address space its jobs may use beyond its baseline."""
    global _memory_cap
    _memory_cap = memory_cap


def source(args: dict[str, Any], payloads: list[bytes]) -> bytes:
    """The file's bytes (sent along, or read from the path the server named); the decode
    memory allowed to this job is what the worker's cap leaves beside them."""
    if payloads:
        data = payloads[0]
    else:
        path = args.get("path")
        if not isinstance(path, str):
            raise ValueError("a job needs the file's bytes or its path")
        limit = int(args.get("max_bytes", 0)) or None
        with open(path, "rb") as handle:
            if limit is not None and os.fstat(handle.fileno()).st_size > limit:
                raise ImageError("The file is larger than the upload limit.", "too_large")
            data = handle.read()
    if _memory_cap is not None:
        limit_decode_memory(int(_memory_cap * DECODE_SHARE) - len(data))
    return data


def preview(args: dict[str, Any], payloads: list[bytes]) -> Reply:
    """`open_preview` of the file: the reduced decode that fingerprinting needs."""
    found = open_preview(source(args, payloads), min_side=int(args["min_side"]), subject=_subject(args))
    picture, pixels = encode_image(found.image)
    return Reply({"picture": picture, "box": list(found.frame.box), "info": _info(found.info)}, [pixels])


def photo(args: dict[str, Any], payloads: list[bytes]) -> Reply:
    """`open_image` of the file fitted to `max_side` (None: full size), and, when asked, also
    to `also_side` (decoded again at that size: pixels exactly those of `open_image`)."""
    data = source(args, payloads)
    max_side = args.get("max_side")
    found = open_image(data, max_side=max_side, subject=_subject(args))
    header: dict[str, Any] = {"info": _info(found.info)}
    header["rgb"], rgb = encode_image(found.rgb)
    replies = [rgb]
    if found.alpha is not None:
        header["alpha"], alpha = encode_image(found.alpha)
        replies.append(alpha)
    also = args.get("also_side")
    if also is not None:
        other = open_image(data, max_side=int(also), subject=_subject(args))
        header["also"], pixels = encode_image(other.with_alpha())
        replies.append(pixels)
    return Reply(header, replies)


def photo_from(header: dict[str, Any], payloads: list[bytes]) -> tuple[Photo, Image.Image | None]:
    """The `Photo` (and the picture fitted to `also_side`, if asked for) that `photo` sent."""
    rgb = decode_image(header.get("rgb"), payloads[0]).convert("RGB")
    index, alpha = 1, None
    if "alpha" in header:
        alpha = decode_image(header["alpha"], payloads[index]).convert("L")
        index += 1
    also = decode_image(header["also"], payloads[index]) if "also" in header else None
    return Photo(rgb=rgb, alpha=alpha, info=_checked_info(header.get("info"))), also


def preview_from(header: dict[str, Any], payloads: list[bytes]) -> Preview:
    """The `Preview` that `preview` sent."""
    image = decode_image(header.get("picture"), payloads[0])
    box = header.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ValueError(f"bad frame box {box!r}")
    return Preview(image=image, frame=Frame(*map(float, box)), info=_checked_info(header.get("info")))


def _subject(args: dict[str, Any]) -> str | None:
    subject = args.get("subject")
    return subject if isinstance(subject, str) else None


def _info(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": info.get("format"),
        "mode": info.get("mode"),
        "size": list(info.get("size", (0, 0))),
        "animated": bool(info.get("animated")),
    }


def _checked_info(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise ValueError("picture info is not an object")
    size = info.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and v > 0 for v in size)):
        raise ValueError(f"bad picture size {size!r}")
    return {
        "format": info.get("format") if isinstance(info.get("format"), str) else None,
        "mode": info.get("mode") if isinstance(info.get("mode"), str) else None,
        "size": (size[0], size[1]),
        "animated": info.get("animated") is True,
    }


JOBS: dict[str, Job] = {"preview": preview, "photo": photo}
