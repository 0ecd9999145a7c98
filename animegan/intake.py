"""Image intake: the one place that turns whatever a user hands in into a clean RGB picture.

The UI, the CLI and the result cache all go through ``open_image`` (the picture the model
sees) or ``open_preview`` (a reduced decode, enough to fingerprint it) so that they agree
on what a picture *is*: EXIF orientation applied, every Pillow mode mapped to 8-bit RGB
plus an optional alpha mask, the first frame of an animation, and the same refusals
(empty, truncated, damaged, not an image, too many pixels, too costly to decode,
degenerate shape) with messages a user can act on.

Decoding is bounded (``safe_decode``): only photo formats, limits on pixels, expansion,
scans and metadata, and a time budget. A large picture is decoded at reduced scale where
the format allows it (JPEG), then shrunk by a whole factor and converted to 8 bits strip by
strip (``pixels``), so memory stays near the decoded frame whatever its mode.

No torch here: importing this module must stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from animegan.errors import ImageError
from animegan.pixels import SWAPPING, Frame, shrunk_to_8bit, upright
from animegan.safe_decode import BudgetReader, decode, drop_large_metadata, is_animated, open_untrusted

# A 12 MP phone photo must pass; the limit keeps a decoded image near 150 MB of RGB.
DEFAULT_MAX_PIXELS = 50_000_000
# Longest side stylized by default: a cache miss then takes about a second on a 2-core CPU
# (bench/results/engine.md).
DEFAULT_MAX_SIDE = 768
MIN_SIDE = 8
MAX_ASPECT = 20.0
# A JPEG fitted while it is opened is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
# scaling) but never below this many times the target, as Pillow's ``thumbnail`` does: the
# Lanczos pass after it then still reduces at least 2x, which keeps the result within
# 50 dB PSNR of a full-size decode while a 12 MP photo fits about 3x faster.
DRAFT_GAP = 2.0
# What is left after decoding is first shrunk by a whole factor (a box average) down to
# this many times the target, then Lanczos-resized: Pillow's ``reducing_gap=3.0``.
REDUCING_GAP = 3.0
# Local files larger than this are refused before they are read (uploads are capped lower).
MAX_FILE_BYTES = 256 << 20

# Pillow's own decompression-bomb guard uses the same limit, so no code path in the process
# decodes more than intake would accept.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

ImageSource = str | Path | bytes | Image.Image | np.ndarray

_UPLOAD = "The uploaded file"


@dataclass(frozen=True)
class Photo:
    """A decoded, upright picture: ``rgb`` (mode "RGB") and ``alpha`` (mode "L" or None).

    ``info`` describes the source: ``format`` (e.g. "JPEG", None for in-memory images),
    ``mode`` (Pillow mode before conversion), ``size`` (width, height after orientation,
    before any ``fit``) and ``animated`` (only the first frame of an animation is used).
    """

    rgb: Image.Image
    alpha: Image.Image | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size

    def with_alpha(self) -> Image.Image:
        """``rgb`` with ``alpha`` put back (RGBA), or ``rgb`` itself when opaque: the picture
        as the model sees it, alpha included (what the cache keys and calibrates on)."""
        return apply_alpha(self.rgb, self.alpha)

    def fit(self, max_side: int | None) -> Photo:
        """Downscale so the longest side is at most ``max_side``; never upscales.

        ``None`` keeps full resolution. Aspect ratio is kept (the short side never drops
        below the minimum the model accepts).
        """
        size = fitted_size(self.size, max_side)
        if size == self.size:
            return self
        rgb = self.rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        alpha = None
        if self.alpha is not None:
            alpha = self.alpha.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        return replace(self, rgb=rgb, alpha=alpha)


@dataclass(frozen=True)
class Preview:
    """A reduced decode of a picture, for fingerprinting it without a full decode.

    ``image`` is RGB, or RGBA when the picture has transparency; ``frame`` is the box of
    ``image`` that the whole picture covers; ``info`` is as ``Photo.info`` (``size`` is
    the whole picture's).
    """

    image: Image.Image
    frame: Frame
    info: dict[str, Any]

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.info["size"]
        return int(width), int(height)

    @property
    def has_alpha(self) -> bool:
        return self.image.mode == "RGBA"


def fitted_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The size ``Photo.fit(max_side)`` gives a picture of ``size`` (unchanged if it fits)."""
    width, height = size
    if max_side is None or max(width, height) <= max_side:
        return size
    scale = max_side / max(width, height)
    return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))


def apply_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Put ``alpha`` back on a (stylized) RGB image, resized to match it; RGB if None."""
    if alpha is None:
        return rgb
    if alpha.size != rgb.size:
        alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
    out = rgb.convert("RGB")  # a copy, so the caller's image keeps its mode
    out.putalpha(alpha)
    return out


def open_image(
    src: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    subject: str | None = None,
) -> Photo:
    """Decode ``src`` (path, bytes, PIL image or numpy array) into an upright ``Photo``.

    With ``max_side`` the photo comes back fitted, like ``open_image(src).fit(max_side)``
    (same size; pixels within 50 dB PSNR), but a large picture is decoded at reduced scale
    and shrunk first, which saves most of the work and memory. Raises ``ImageError`` (with
    ``reason``) for anything that is not a usable picture. ``max_pixels`` can only tighten
    Pillow's process-wide guard (``DEFAULT_MAX_PIXELS``). ``subject`` names bytes in
    messages ("The uploaded file" by default; a path is named by its file name).
    """
    with _Source(src, max_pixels, subject) as source:
        target = fitted_size(source.stored_size, max_side)  # a fit keeps the aspect: any frame
        source.draft((math.ceil(target[0] * DRAFT_GAP), math.ceil(target[1] * DRAFT_GAP)))
        shrunk, frame = source.decoded(lambda size: _whole_factor(size, target, REDUCING_GAP))
    if source.orientation in SWAPPING:
        target = target[::-1]
    rgb, alpha = _split_alpha(shrunk)
    if rgb.size != target or frame.box != (0.0, 0.0, float(rgb.width), float(rgb.height)):
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, box=frame.box)
        if alpha is not None:
            alpha = alpha.resize(target, Image.Resampling.LANCZOS, box=frame.box)
    return Photo(rgb=rgb, alpha=alpha, info=source.info)


def open_preview(
    src: ImageSource, *, min_side: int, max_pixels: int = DEFAULT_MAX_PIXELS, subject: str | None = None
) -> Preview:
    """Decode ``src`` just enough to keep ``min_side`` pixels on its short side (a JPEG at
    1/2..1/8 scale, anything else shrunk after decoding), upright, for fingerprinting.

    Refuses exactly what ``open_image`` refuses.
    """
    with _Source(src, max_pixels, subject) as source:
        source.draft((min_side, min_side))
        shrunk, frame = source.decoded(lambda size: max(1, min(size) // min_side))
    rgb, alpha = _split_alpha(shrunk)
    if alpha is not None:
        rgb.putalpha(alpha)
    return Preview(image=rgb, frame=frame, info=source.info)


class _Source:
    """One opened picture on its way to 8-bit pixels: checks, reduced decoding, orientation."""

    def __init__(self, src: ImageSource, max_pixels: int, subject: str | None) -> None:
        self.image, self.subject, self.reader = _open(src, subject or _UPLOAD)
        self.owned = self.image is not src  # the caller's PIL image must not be drafted or closed
        self.stored_size = self.image.size
        self.orientation = 1
        try:
            _check_size(self.stored_size, max_pixels)  # before decoding, so a bomb costs nothing
        except BaseException:
            self.close()
            raise
        self.info: dict[str, Any] = {"format": self.image.format, "mode": self.image.mode}

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.owned:
            self.image.close()  # animations keep their file open for later frames otherwise

    def draft(self, at_least: tuple[int, int]) -> None:
        """Let a JPEG decode at reduced scale, keeping at least ``at_least`` pixels (in the
        file's orientation); a no-op for other formats and for the caller's own images."""
        if self.owned and self.image.format in ("JPEG", "MPO"):
            self.image.draft("RGB" if self.image.mode in ("RGB", "YCbCr") else None, at_least)

    def decoded(self, factor_for: Callable[[tuple[int, int]], int]) -> tuple[Image.Image, Frame]:
        """Decode, shrink by ``factor_for(decoded size)`` and turn upright: 8-bit pixels and
        the frame of them that the picture covers. Fills in ``info``."""
        decode(self.image, self.subject, self.stored_size)
        self.orientation = _orientation(self.image)  # a PNG may keep its EXIF after the pixels
        frame = Frame.of(self.stored_size, self.image.size)
        factor = max(1, factor_for(self.image.size))
        try:
            shrunk = shrunk_to_8bit(self.image, factor)
        except ValueError as exc:
            raise ImageError(
                f"The image uses a colour mode ({self.image.mode}) that cannot be converted to "
                "RGB; please save it as PNG or JPEG and try again.",
                "unsupported",
            ) from exc
        frame = frame.reduced(factor).turned(self.orientation, shrunk.size)
        swapped = self.orientation in SWAPPING
        self.info["size"] = self.stored_size[::-1] if swapped else self.stored_size
        self.info["animated"] = self.owned and is_animated(self.image, self.reader)
        return upright(shrunk, self.orientation), frame


def _whole_factor(size: tuple[int, int], target: tuple[int, int], gap: float) -> int:
    """The whole shrink factor that keeps ``size`` at least ``gap`` times ``target``."""
    return max(1, int(min(size[0] / target[0], size[1] / target[1]) / gap))


def _open(src: ImageSource, named: str) -> tuple[Image.Image, str, BudgetReader | None]:
    """The image (not decoded yet), how messages name it (bytes as `named`), and the
    reader that bounds its decoding time (None for pictures already in memory)."""
    if isinstance(src, Image.Image):
        return src, "The image", None
    if isinstance(src, np.ndarray):
        return _from_array(src), "The image array", None
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageError(
                f"{named} is empty (0 bytes); please choose a photo and try again.",
                "empty",
            )
        image, reader = open_untrusted(data, named)
        return image, named, reader
    if isinstance(src, (str, Path)):
        path = Path(src)
        subject = f"The file {path.name}"
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ImageError(
                    f"{subject} is {size / 2**20:.0f} MB, more than the {MAX_FILE_BYTES >> 20} MB "
                    "allowed; please use a smaller file.",
                    "too_large",
                )
            data = path.read_bytes() if size else b""
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        if not data:
            raise ImageError(f"{subject} is empty (0 bytes).", "empty")
        image, reader = open_untrusted(data, subject)
        return image, subject, reader
    raise TypeError(f"unsupported image source type: {type(src).__name__}")


def _unreadable(path: Path, exc: OSError) -> ImageError:
    why = (exc.strerror or str(exc)).lower()
    return ImageError(f"Could not open the file {path.name}: {why}.", "not_image")


def _from_array(array: np.ndarray) -> Image.Image:
    """Arrays are HxW, HxWx1, HxWx3 or HxWx4; uint8 as is, uint16 and bool full range,
    floats taken as 0..1 (clipped)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"An image array must be HxW, HxWx3 or HxWx4, not {array.shape}.", "unsupported")
    if array.size == 0:
        raise ImageError("The image array is empty.", "empty")
    if array.dtype == np.uint16:
        array = _rescale_to_uint8(array.astype(np.float32), 65535.0)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        array = _rescale_to_uint8(np.nan_to_num(array.astype(np.float32)), 1.0)
    elif array.dtype != np.uint8:
        raise ImageError(f"Image arrays of type {array.dtype} are not supported.", "unsupported")
    return Image.fromarray(np.ascontiguousarray(array))


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width}x{height} pixels, more than the {max_pixels:,} pixels "
            "allowed; please use a smaller image.",
            "too_large",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The image is only {width}x{height} pixels; each side must be at least {MIN_SIDE} pixels.",
            "too_small",
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageError(
            f"The image is {width}x{height} pixels, too long and thin to stylize "
            f"(at most {MAX_ASPECT:g}:1); please crop it.",
            "bad_aspect",
        )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright); junk or oversized metadata counts as upright."""
    drop_large_metadata(image)
    try:
        orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # EXIF parsing raises a zoo of types on junk metadata
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """8-bit RGB plus an alpha mask, or None when the image has none or is fully opaque."""
    if image.mode not in ("LA", "RGBA"):
        return image.convert("RGB"), None
    alpha = image.getchannel("A")
    rgb = image.convert("RGB")
    return rgb, None if alpha.getextrema() == (255, 255) else alpha


def _rescale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    return np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
