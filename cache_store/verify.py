"""Second opinion on a pHash match before a fuzzy hit is served.

pHash looks at coarse luminance only: a greyscale or tinted copy, a brighter copy, and
sometimes a crop hash within a few bits of the original. Serving the original's output for
those would be wrong, so a candidate must also agree on alpha, aspect ratio, mean
brightness, the 16x16 luma layout and the 8x8 chroma layout.

Tolerances were measured on the 40 project photos (bench/bench_cache.py writes the margins
to bench/results/cache.md): every must-hit variant (JPEG q>=40, WebP, PNG, 0.5x-2x resizes,
+-5 % brightness) stays well inside, every must-miss variant (greyscale, tint, mirror, 10 %
crop, +40 % brightness, other photos) fails at least one check by a clear margin.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from .fingerprint import CHROMA_SIDE, LUMA_SIDE

#: |ln(aspect ratio)|: resizes round to whole pixels (<= 0.7 % on the photos); a 10 % crop
#: of one side moves it by 10 %.
ASPECT_TOLERANCE = 0.03
#: |ln(mean luma ratio)|: +-5 % brightness gives <= 0.06, +40 % (even clipped) >= 0.12.
GAIN_TOLERANCE = 0.09
#: Mean |luma - gain * cached luma| over the 16x16 thumbnail, in 8-bit levels: re-encodes
#: and resizes stay < 2.1, brightness edits < 3; a mirror is >= 18, a centred 10 % crop >= 7.
STRUCTURE_TOLERANCE = 4.5
#: Mean |chroma - gain * cached chroma| over the 8x8 Cb and Cr thumbnails (around 128):
#: re-encodes stay ~1, a greyscale copy of the least colourful photo is >= 3, a tint >= 4.
CHROMA_TOLERANCE = 2.0

_LUMA = LUMA_SIDE * LUMA_SIDE
_CHROMA = 2 * CHROMA_SIDE * CHROMA_SIDE


class Visual(Protocol):
    """What the verifier compares: a `Fingerprint` or a stored fuzzy row."""

    signature: bytes
    width: int
    height: int
    has_alpha: bool


#: The checks after alpha, in order, with their tolerances.
TOLERANCES = {
    "aspect": ASPECT_TOLERANCE,
    "brightness": GAIN_TOLERANCE,
    "structure": STRUCTURE_TOLERANCE,
    "colour": CHROMA_TOLERANCE,
}


def mismatch(query: Visual, cached: Visual) -> str | None:
    """The first check that `query` fails against `cached`, or None when they agree."""
    if query.has_alpha != cached.has_alpha:
        return "alpha"
    found = measures(query, cached)
    return next((name for name, tolerance in TOLERANCES.items() if found[name] > tolerance), None)


def measures(query: Visual, cached: Visual) -> dict[str, float]:
    """How far `query` is from `cached` on each check (the bench reports their margins).

    Luma and chroma are compared after scaling `cached` by the brightness gain, so a
    +-5 % brightness edit costs nothing there and is judged by the gain alone.
    """
    q_luma, q_chroma = _planes(query.signature)
    c_luma, c_chroma = _planes(cached.signature)
    gain = (q_luma.mean() + 1.0) / (c_luma.mean() + 1.0)
    return {
        "aspect": abs(math.log((query.width * cached.height) / (query.height * cached.width))),
        "brightness": abs(math.log(gain)),
        "structure": float(np.abs(q_luma - gain * c_luma).mean()),
        "colour": float(np.abs(q_chroma - gain * c_chroma).mean()),
    }


def _planes(signature: bytes) -> tuple[np.ndarray, np.ndarray]:
    if len(signature) != _LUMA + _CHROMA:
        raise ValueError(f"signature has {len(signature)} bytes, expected {_LUMA + _CHROMA}")
    values = np.frombuffer(signature, dtype=np.uint8).astype(np.float32)
    return values[:_LUMA], values[_LUMA:] - 128.0
