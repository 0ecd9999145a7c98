"""How far re-encoding and resizing move each cell of one picture's signature.

No single tolerance fits every picture: at a hard edge a resize moves a cell's luma by
several levels, on a smooth wall by a fraction of one; JPEG takes half the colour out of a
faint tint but leaves a saturated one alone. So the tolerances are measured per entry,
when a result is stored and the picture is at hand: it is put through the strongest members
of each must-hit class (a low JPEG and WebP quality, nearest-neighbour, box, bilinear and
Lanczos resizes down to under half size and up, sharpening, a brightness step), the
signature of each copy is compared with the picture's own, and every check allows a
multiple of the largest move seen, plus a floor. The factors and qualities here are not the
ones `contract` samples, so the contract tests an independent draw of each class.

Tolerances are capped: an upload cannot buy itself loose tolerances (with fine, hard-edged
texture, say) beyond what a real photo needs, which bounds what a planted entry can match.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .signature import Signature
from .verify import CELL_CHECKS, GLOBAL_CHECKS, Tolerances, deviation

#: Pictures are calibrated at this longest side (larger ones are fitted first): the noise
#: of a re-encode is measured at a size uploads typically have, whatever the model's side.
CALIBRATION_SIDE = 768
#: Each check allows this multiple of the largest move a simulated copy made.
MARGIN = 1.6
#: ... plus a floor, per check, in its own units (8-bit levels; log ratios; radians).
FLOORS = {
    "luma": 1.5,
    "chroma": 1.0,
    "detail_loss": 1.5,
    "detail_gain": 3.0,
    "contrast": 0.03,
    "colour": 0.05,
    "colour_error": 0.02,
    "hue": 0.1,
}
#: Sharpening adds detail in proportion to what is there: twice the margin for gains.
GAIN_MARGIN = 2 * MARGIN
#: The largest tolerance any cell may get, in 8-bit levels, whatever the picture.
CAPS = {"luma": 16.0, "chroma": 10.0, "detail_loss": 16.0, "detail_gain": 32.0}

Copy = Callable[[Image.Image], Image.Image]


def tolerances(picture: Image.Image) -> Tolerances:
    """Measure `picture`'s tolerances (mode RGB), in tens of milliseconds."""
    if picture.mode != "RGB":
        raise ValueError(f"calibration needs an RGB picture, not {picture.mode}")
    base = _fitted(picture, CALIBRATION_SIDE)
    own = Signature.of(base)
    moves = [deviation(Signature.of(copy(base)), own) for copy in COPIES]
    largest = {name: np.max([getattr(move, name) for move in moves], axis=0) for name in CELL_CHECKS}
    overall = {name: max(getattr(move, name) for move in moves) for name in GLOBAL_CHECKS}
    cells = {
        name: np.minimum(
            (GAIN_MARGIN if name == "detail_gain" else MARGIN) * largest[name] + FLOORS[name], CAPS[name]
        )
        for name in CELL_CHECKS
    }
    return Tolerances(**cells, **{name: MARGIN * overall[name] + FLOORS[name] for name in GLOBAL_CHECKS})


def _fitted(picture: Image.Image, side: int) -> Image.Image:
    if max(picture.size) <= side:
        return picture
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _reencoded(fmt: str, quality: int, **options: object) -> Copy:
    def copy(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, fmt, quality=quality, **options)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return copy


def _shrunk_and_reencoded(image: Image.Image) -> Image.Image:
    """The most common re-upload: a smaller copy, saved again as a JPEG."""
    return _reencoded("JPEG", 60)(_resized(0.5, Image.Resampling.BICUBIC)(image))


def _resized(factor: float, resample: Image.Resampling) -> Copy:
    def copy(image: Image.Image) -> Image.Image:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        return image.resize(size, resample)

    return copy


def _sharpened(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=1.5, percent=90, threshold=2))


def _brightness(factor: float) -> Copy:
    return lambda image: ImageEnhance.Brightness(image).enhance(factor)


_NEAREST, _BOX = Image.Resampling.NEAREST, Image.Resampling.BOX
#: The simulated copies. Nearest-neighbour resizing moves cells most, and differently at
#: each factor (which pixels it keeps), so it is sampled most densely.
COPIES: tuple[Copy, ...] = (
    _reencoded("JPEG", 35),
    _reencoded("WEBP", 60),
    *(_resized(f, _NEAREST) for f in (0.43, 0.5, 0.56, 0.66, 0.72, 0.9, 1.35)),
    *(_resized(f, _BOX) for f in (0.47, 0.65, 0.85)),
    _resized(0.43, Image.Resampling.BILINEAR),
    _shrunk_and_reencoded,
    _resized(0.55, Image.Resampling.LANCZOS),
    _sharpened,
    _brightness(1.05),
    _brightness(0.95),
)
