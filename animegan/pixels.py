"""Decoded pixels of any Pillow mode, shrunk and brought to 8 bits in bounded memory.

A 16-bit greyscale PNG of 7000 x 7000 is 98 MB decoded; converting it whole to float (as
this code once did) took 1.2 GB. Here an image is shrunk by a whole factor first (a box
average, what Pillow's own `reducing_gap` does before a Lanczos resize), and whatever
conversion it needs runs on one strip of about a megapixel at a time, so the extra memory
is the small result plus one strip, whatever the picture's size.

`Frame` tracks which part of the shrunk image the whole picture covers: JPEG decoding at
reduced scale and `reduce` round sizes up, so the last column may be only partly inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: The 8-bit modes everything is brought to: grey or colour, with or without alpha.
EIGHT_BIT = ("L", "LA", "RGB", "RGBA")
#: Rows per conversion strip: about this many pixels at a time.
STRIP_PIXELS = 1 << 20
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: EXIF orientations that swap width and height.
SWAPPING = {5, 6, 7, 8}


@dataclass(frozen=True)
class Frame:
    """The box, in an image's pixel coordinates, that the whole picture covers."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.right, self.bottom)

    @classmethod
    def of(cls, picture: tuple[int, int], image: tuple[int, int]) -> Frame:
        """A picture of size `picture` decoded, from its top left, into `image` pixels of
        1/scale each (scale = the decoder's or `reduce`'s whole factor)."""
        scale_x = math.ceil(picture[0] / image[0]) if image[0] < picture[0] else 1
        scale_y = math.ceil(picture[1] / image[1]) if image[1] < picture[1] else 1
        return cls(0.0, 0.0, picture[0] / scale_x, picture[1] / scale_y)

    def reduced(self, factor: int) -> Frame:
        return Frame(self.left / factor, self.top / factor, self.right / factor, self.bottom / factor)

    def turned(self, orientation: int, size: tuple[int, int]) -> Frame:
        """This frame after `upright(image, orientation)` of an image of `size`."""
        w, h = size
        x0, y0, x1, y1 = self.box
        flips = {
            1: (x0, y0, x1, y1),
            2: (w - x1, y0, w - x0, y1),
            3: (w - x1, h - y1, w - x0, h - y0),
            4: (x0, h - y1, x1, h - y0),
            5: (y0, x0, y1, x1),
            6: (h - y1, x0, h - y0, x1),
            7: (h - y1, w - x1, h - y0, w - x0),
            8: (y0, w - x1, y1, w - x0),
        }
        return Frame(*flips.get(orientation, flips[1]))


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """`image` turned as its EXIF orientation says, with no metadata left to turn it twice."""
    method = _TRANSPOSES.get(orientation)
    turned = image.transpose(method) if method is not None else image.copy()
    turned.info = {}
    return turned


def shrunk_to_8bit(image: Image.Image, factor: int) -> Image.Image:
    """`image` (a decoded frame of any mode) reduced by `factor` and brought to one of
    `EIGHT_BIT`, converting strip by strip when its own mode cannot be reduced."""
    mode = image.mode
    if mode in EIGHT_BIT:
        return image.reduce(factor) if factor > 1 else image
    convert = _converter(image)
    width, height = image.size
    rows = max(factor, STRIP_PIXELS // max(width, 1) // factor * factor)
    out: Image.Image | None = None
    for top in range(0, height, rows):
        strip = convert(image.crop((0, top, width, min(top + rows, height))))
        if factor > 1:
            strip = strip.reduce(factor)
        if out is None:
            out = Image.new(strip.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        out.paste(strip, (0, top // factor))
    assert out is not None
    return out


def _converter(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """How a strip of `image` becomes 8-bit: Pillow's own conversion, or a scaling to 0..255
    of 16-bit, 32-bit and float greyscale, by a range taken from the whole image."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        return lambda strip: _grey(np.asarray(strip, dtype=np.uint16).astype(np.float32), 0.0, 65535.0)
    if mode in ("I", "F"):
        extrema = image.getextrema()
        assert isinstance(extrema[0], (int, float)) and isinstance(extrema[1], (int, float))  # one band
        low, high = float(extrema[0]), float(extrema[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            low, high = _finite_extrema(image)
        if mode == "I" and low >= 0 and high <= 65535:
            low, high = 0.0, 255.0 if high <= 255 else 65535.0
        elif mode == "F" and low >= 0 and high <= 1:
            low, high = 0.0, 1.0
        return lambda strip: _grey(np.asarray(strip, dtype=np.float32), low, high)
    if mode == "La":  # premultiplied grey converts to nothing but its straight form
        return lambda strip: strip.convert("LA")
    target = "RGBA" if mode in ("PA", "RGBa") or _palette_alpha(image) else "RGB"
    if mode == "1":
        target = "L"
    return lambda strip: strip.convert(target)


def _grey(values: np.ndarray, low: float, high: float) -> Image.Image:
    scaled = np.nan_to_num(values - low, nan=0.0, posinf=high - low, neginf=0.0) * (
        255.0 / max(high - low, 1e-12)
    )
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _finite_extrema(image: Image.Image) -> tuple[float, float]:
    """Extrema ignoring NaN and infinities, strip by strip."""
    low, high = math.inf, -math.inf
    width, height = image.size
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        values = np.asarray(image.crop((0, top, width, min(top + rows, height))), dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (0.0, 1.0) if low > high else (low, high)


def _palette_alpha(image: Image.Image) -> bool:
    palette = image.palette
    return image.mode == "P" and (
        "transparency" in image.info or (palette is not None and palette.mode == "RGBA")
    )
