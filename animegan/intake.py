"""Image intake: the one place that turns whatever a user hands in into a clean RGB picture.

The UI, the CLI and the result cache all go through ``open_image`` so that they agree on
what a picture *is*: EXIF orientation applied, every Pillow mode mapped to 8-bit RGB plus
an optional alpha mask, the first frame of an animation, and the same refusals (empty,
truncated, not an image, too many pixels, degenerate shape) with user-facing messages.

No torch here: importing this module must stay cheap.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from animegan.errors import ImageError

# A 12 MP phone photo must pass; the limit keeps a decoded image near 150 MB of RGB.
DEFAULT_MAX_PIXELS = 50_000_000
# Longest side stylized by default: a cache miss then takes about a second on a 2-core CPU
# (bench/results/engine.md).
DEFAULT_MAX_SIDE = 768
MIN_SIDE = 8
MAX_ASPECT = 20.0

# Pillow's own decompression-bomb guard uses the same limit, so no code path in the process
# decodes more than intake would accept; truncated files must raise, never load half-grey.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

ImageSource = str | Path | bytes | Image.Image | np.ndarray

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


@dataclass(frozen=True)
class Photo:
    """A decoded, upright picture: ``rgb`` (mode "RGB") and ``alpha`` (mode "L" or None).

    ``info`` describes the source: ``format`` (e.g. "JPEG", None for in-memory images),
    ``mode`` (Pillow mode before conversion), ``size`` (width, height after orientation,
    before any ``fit``) and ``n_frames`` (more than 1 for animations, of which only the
    first frame is used).
    """

    rgb: Image.Image
    alpha: Image.Image | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size

    def fit(self, max_side: int | None) -> Photo:
        """Downscale so the longest side is at most ``max_side``; never upscales.

        ``None`` keeps full resolution. Aspect ratio is kept (the short side never drops
        below the minimum the model accepts).
        """
        width, height = self.rgb.size
        if max_side is None or max(width, height) <= max_side:
            return self
        scale = max_side / max(width, height)
        size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
        rgb = self.rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        alpha = None
        if self.alpha is not None:
            alpha = self.alpha.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return replace(self, rgb=rgb, alpha=alpha)


def apply_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Put ``alpha`` back on a (stylized) RGB image, resized to match it; RGB if None."""
    if alpha is None:
        return rgb
    if alpha.size != rgb.size:
        alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
    out = rgb.convert("RGB")  # a copy, so the caller's image keeps its mode
    out.putalpha(alpha)
    return out


def open_image(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Decode ``src`` (path, bytes, PIL image or numpy array) into an upright ``Photo``.

    Raises ``ImageError`` (with ``reason``) for anything that is not a usable picture.
    ``max_pixels`` can only tighten Pillow's process-wide guard (``DEFAULT_MAX_PIXELS``).
    """
    image = _open(src)
    info = {
        "format": image.format,
        "mode": image.mode,
        "n_frames": _frame_count(image),
    }
    _check_size(image.size, max_pixels)  # before decoding, so a bomb costs nothing
    _decode(image)
    image = _upright(image)
    rgb, alpha = _split_alpha(image)
    return Photo(rgb=rgb, alpha=alpha, info={**info, "size": rgb.size})


def _open(src: ImageSource) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, np.ndarray):
        return _from_array(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageError("The uploaded file is empty.", "empty")
        return _open_file(io.BytesIO(data), "The uploaded file")
    if isinstance(src, (str, Path)):
        path = Path(src)
        try:
            empty = path.stat().st_size == 0
        except OSError as exc:
            raise ImageError(f"Could not read {path.name}: {exc.strerror}.", "not_image") from exc
        if empty:
            raise ImageError(f"{path.name} is empty (0 bytes).", "empty")
        return _open_file(path, path.name)
    raise TypeError(f"unsupported image source type: {type(src).__name__}")


def _open_file(fp: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{name} has too many pixels to process safely; use a smaller image.", "too_large"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image in a format we can read.", "not_image") from exc
    except OSError as exc:
        raise ImageError(f"Could not read {name}: {exc}.", "not_image") from exc
    return image  # Pillow opens at frame 0: animations are stylized from their first frame


def _from_array(array: np.ndarray) -> Image.Image:
    """Arrays are HxW, HxWx1, HxWx3 or HxWx4; uint8 as is, uint16 and bool full range,
    floats taken as 0..1 (clipped)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"An image array must be HxW, HxWx3 or HxWx4, not {array.shape}.", "unsupported"
        )
    if array.size == 0:
        raise ImageError("The image array is empty.", "empty")
    if array.dtype == np.uint16:
        array = _rescale_to_uint8(array.astype(np.float64), 65535.0)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        array = _rescale_to_uint8(np.nan_to_num(array.astype(np.float64)), 1.0)
    elif array.dtype != np.uint8:
        raise ImageError(f"Image arrays of type {array.dtype} are not supported.", "unsupported")
    return Image.fromarray(np.ascontiguousarray(array))


def _frame_count(image: Image.Image) -> int:
    """Number of frames; a damaged later frame only matters if it is the one we use."""
    try:
        return int(getattr(image, "n_frames", 1))
    except (OSError, EOFError, ValueError, SyntaxError):
        return 1


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width}x{height} pixels, more than the {max_pixels:,} allowed; "
            "use a smaller image.",
            "too_large",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The image is {width}x{height} pixels; each side must be at least {MIN_SIDE}.",
            "too_small",
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageError(
            f"The image is {width}x{height} pixels, too long and thin to stylize "
            f"(at most {MAX_ASPECT:g}:1).",
            "bad_aspect",
        )


def _decode(image: Image.Image) -> None:
    """Decode the pixels now, so a damaged file fails here and not deep inside the model."""
    try:
        image.load()
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise ImageError(
            "The image file is truncated or damaged; upload it again.", "truncated"
        ) from exc


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # EXIF parsing raises a zoo of types on junk metadata
        return image


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """8-bit RGB plus an alpha mask, or None when the image has none or is fully opaque."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _high_depth_to_rgb(image), None
    has_alpha = mode in _ALPHA_MODES or (
        mode == "P" and ("transparency" in image.info or image.palette.mode == "RGBA")
    )
    try:
        if not has_alpha:
            return image.convert("RGB"), None
        rgba = image.convert("RGBA")
    except ValueError as exc:
        raise ImageError(f"Images in colour mode {mode} are not supported.", "unsupported") from exc
    alpha = rgba.getchannel("A")
    if alpha.getextrema() == (255, 255):
        return rgba.convert("RGB"), None
    return rgba.convert("RGB"), alpha


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float greyscale to 8 bits without clipping.

    16-bit modes use their full range. Mode "I" uses the smallest of the 8-bit and 16-bit
    ranges that holds the data, else its min..max. Mode "F" is taken as 0..1 when it fits,
    else min..max.
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    low, high = float(values.min()), float(values.max())
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = _rescale_to_uint8(values, 65535.0)
    elif image.mode == "I" and low >= 0 and high <= 65535:
        grey = _rescale_to_uint8(values, 255.0 if high <= 255 else 65535.0)
    elif image.mode == "F" and low >= 0 and high <= 1:
        grey = _rescale_to_uint8(values, 1.0)
    else:
        grey = _rescale_to_uint8(values - low, max(high - low, 1e-12))
    return Image.fromarray(grey).convert("RGB")


def _rescale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    return np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
