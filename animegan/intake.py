"""Image intake: the one place that turns whatever a user hands in into a clean RGB picture.

The UI, the CLI and the result cache all go through ``open_image`` so that they agree on
what a picture *is*: EXIF orientation applied, every Pillow mode mapped to 8-bit RGB plus
an optional alpha mask, the first frame of an animation, and the same refusals (empty,
truncated, damaged, not an image, too many pixels, degenerate shape) with messages a user
can act on.

No torch here: importing this module must stay cheap.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from animegan.errors import ImageError

# A 12 MP phone photo must pass; the limit keeps a decoded image near 150 MB of RGB.
DEFAULT_MAX_PIXELS = 50_000_000
# Longest side stylized by default: a cache miss then takes about a second on a 2-core CPU
# (bench/results/engine.md).
DEFAULT_MAX_SIDE = 768
MIN_SIDE = 8
MAX_ASPECT = 20.0
# A JPEG fitted while it is opened is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
# scaling) but never below this many times the target, as Pillow's ``thumbnail`` does: the
# LANCZOS pass after it then still reduces at least 2x, which keeps the result within
# 50 dB PSNR of a full-size decode while a 12 MP photo fits about 3x faster.
DRAFT_GAP = 2.0

# Pillow's own decompression-bomb guard uses the same limit, so no code path in the process
# decodes more than intake would accept; truncated files must raise, never load half-grey.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

ImageSource = str | Path | bytes | Image.Image | np.ndarray

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # quarter turns: width and height trade places
_UPLOAD = "The uploaded file"
_FORMATS_HINT = "please use a photo in a common format such as JPEG, PNG or WebP"


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
        return self._resized(_fitted_size(self.size, max_side))

    def _resized(self, size: tuple[int, int]) -> Photo:
        if size == self.size:
            return self
        rgb = self.rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        alpha = None
        if self.alpha is not None:
            alpha = self.alpha.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return replace(self, rgb=rgb, alpha=alpha)


def _fitted_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
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
    src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None
) -> Photo:
    """Decode ``src`` (path, bytes, PIL image or numpy array) into an upright ``Photo``.

    With ``max_side`` the photo comes back fitted, like ``open_image(src).fit(max_side)``
    (same size; pixels within 50 dB PSNR), but a large JPEG is decoded at reduced scale first,
    which saves most of the work. Raises ``ImageError`` (with ``reason``) for anything
    that is not a usable picture. ``max_pixels`` can only tighten Pillow's process-wide
    guard (``DEFAULT_MAX_PIXELS``).
    """
    image, subject = _open(src)
    owned = image is not src  # the caller's PIL image must not be drafted or closed
    try:
        info = {"format": image.format, "mode": image.mode, "n_frames": _frame_count(image)}
        stored = image.size
        _check_size(stored, max_pixels)  # before decoding, so a bomb costs nothing
        target = _fitted_size(stored, max_side)
        if owned and target != stored:
            _draft(image, target)
        _decode(image, subject)
        orientation = _orientation(image)
        rgb, alpha = _split_alpha(_upright(image, orientation))
    finally:
        if owned:
            image.close()  # animations keep their file open for later frames otherwise
    size = stored[::-1] if orientation in _SWAPPING_ORIENTATIONS else stored
    photo = Photo(rgb=rgb, alpha=alpha, info={**info, "size": size})
    return photo._resized(_fitted_size(size, max_side))


def _open(src: ImageSource) -> tuple[Image.Image, str]:
    """The image (not decoded yet) and how messages name it."""
    if isinstance(src, Image.Image):
        return src, "The image"
    if isinstance(src, np.ndarray):
        return _from_array(src), "The image array"
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageError(
                f"{_UPLOAD} is empty (0 bytes); please choose a photo and upload it again.",
                "empty",
            )
        return _open_file(io.BytesIO(data), _UPLOAD), _UPLOAD
    if isinstance(src, (str, Path)):
        path = Path(src)
        subject = f"The file {path.name}"
        try:
            empty = path.stat().st_size == 0
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        if empty:
            raise ImageError(f"{subject} is empty (0 bytes).", "empty")
        return _open_file(path, subject), subject
    raise TypeError(f"unsupported image source type: {type(src).__name__}")


def _open_file(fp: Path | io.BytesIO, subject: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)  # at frame 0: animations are stylized from their first frame
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{subject} has more than {Image.MAX_IMAGE_PIXELS:,} pixels, too many to process "
            "safely; please use a smaller image.",
            "too_large",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{subject} is not an image we can read; {_FORMATS_HINT}.", "not_image"
        ) from exc
    except OSError as exc:
        if isinstance(fp, Path) and exc.strerror:  # the file system, not the file's content
            raise _unreadable(fp, exc) from exc
        raise _damaged(subject, exc) from exc


def _unreadable(path: Path, exc: OSError) -> ImageError:
    why = (exc.strerror or str(exc)).lower()
    return ImageError(f"Could not open the file {path.name}: {why}.", "not_image")


def _damaged(subject: str, exc: Exception) -> ImageError:
    """Pillow's many decoding failures, told apart only into 'cut short' and 'broken'."""
    if "truncated" in str(exc).lower():
        return ImageError(
            f"{subject} is incomplete (truncated); it may have been cut off while uploading. "
            "Please upload it again.",
            "truncated",
        )
    return ImageError(
        f"{subject} is damaged and its pixels cannot be decoded; please upload it again "
        "or try another copy of the picture.",
        "damaged",
    )


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
            f"The image is {width}x{height} pixels, more than the {max_pixels:,} pixels "
            "allowed; please use a smaller image.",
            "too_large",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The image is only {width}x{height} pixels; each side must be at least "
            f"{MIN_SIDE} pixels.",
            "too_small",
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageError(
            f"The image is {width}x{height} pixels, too long and thin to stylize "
            f"(at most {MAX_ASPECT:g}:1); please crop it.",
            "bad_aspect",
        )


def _draft(image: Image.Image, target: tuple[int, int]) -> None:
    """Let a JPEG decode at reduced scale, but at least ``DRAFT_GAP`` times ``target``.

    A no-op for other formats. ``target`` may be in the file's frame or the upright one:
    a fit keeps the aspect ratio, so turning the picture does not change how far it shrinks.
    """
    width, height = target
    image.draft(None, (math.ceil(width * DRAFT_GAP), math.ceil(height * DRAFT_GAP)))


def _decode(image: Image.Image, subject: str) -> None:
    """Decode the pixels now, so a damaged file fails here and not deep inside the model."""
    try:
        image.load()
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise _damaged(subject, exc) from exc


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright); junk metadata counts as upright, not as an error."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # EXIF parsing raises a zoo of types on junk metadata
        return 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """Turn the picture as its EXIF orientation says, dropping the tag so nothing turns it twice."""
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    if method is None:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # EXIF that Pillow cannot rewrite: turn anyway, without the metadata
        upright = image.transpose(method)
        upright.info.pop("exif", None)
        return upright


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
        # Premultiplied grey ("La") converts to nothing but its straight form.
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
    except ValueError as exc:
        raise ImageError(
            f"The image uses a colour mode ({mode}) that cannot be converted to RGB; "
            "please save it as PNG or JPEG and try again.",
            "unsupported",
        ) from exc
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
