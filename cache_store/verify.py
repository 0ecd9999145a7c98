"""Second opinion on a pHash match before a near-duplicate is served.

The rule: whatever passes differs from the cached picture by no more than re-encoding or
resizing moved that picture when it was stored (`calibration`), anywhere in it. So the
checks judge the worst cell, not the mean, and colour relative to the picture's own colour:

* alpha and aspect ratio must agree;
* brightness: the gain that best maps the cached luma cells onto the upload's (a few per
  cent; or within 1.5 levels on average, for a photo so dark that a per-cent step is a
  rounding of its darkest pixels);
* per cell, after that gain: luma, chroma (the Cb/Cr vector), and detail lost or gained;
* globally: contrast (luma spread), colourfulness, the colour error relative to the
  colour there is (greyscale or desaturated copies of a faint-coloured photo), and the
  mean hue turn (a hue shift keeps colourfulness, so it needs its own check).

A check fails when its deviation exceeds the entry's tolerance; the verifier refuses on the
first failure. An entry stored without tolerances is never served as a near-duplicate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .signature import CELLS, Signature
from .signature import SIZE as SIGNATURE_SIZE

#: |ln(aspect ratio)|: resizes round to whole pixels (<= 0.7 % on the photos); a 10 % crop
#: of one side moves it by 10 %.
ASPECT_TOLERANCE = 0.03
#: |ln(gain)|: +-4 % brightness is 0.04, +-40 % is 0.34 or more.
GAIN_TOLERANCE = 0.08
#: ... or the mean luma moves by at most this many levels (very dark photos).
DARK_SHIFT = 1.5

CELL_CHECKS = ("luma", "chroma", "detail_loss", "detail_gain")
GLOBAL_CHECKS = ("contrast", "colour", "colour_error", "hue")
#: Per-cell tolerances are stored in quarter levels, one byte each; global ones as float32.
_STEP = 0.25
TOLERANCES_SIZE = len(CELL_CHECKS) * CELLS * CELLS + len(GLOBAL_CHECKS) * 4
#: A stored row's signature: the picture's signature, then its tolerances.
REFERENCE_SIZE = SIGNATURE_SIZE + TOLERANCES_SIZE


@dataclass(frozen=True, eq=False)
class Tolerances:
    """Largest deviation allowed per cell (16 x 16, 8-bit levels) and per global check."""

    luma: np.ndarray
    chroma: np.ndarray
    detail_loss: np.ndarray
    detail_gain: np.ndarray
    contrast: float
    colour: float
    colour_error: float
    hue: float

    def to_bytes(self) -> bytes:
        cells = np.stack([getattr(self, name) for name in CELL_CHECKS])
        quarters = np.clip(np.ceil(cells / _STEP), 0, 255).astype(np.uint8)
        scalars = np.array([getattr(self, name) for name in GLOBAL_CHECKS], dtype="<f4")
        return quarters.tobytes() + scalars.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Tolerances:
        if len(data) != TOLERANCES_SIZE:
            raise ValueError(f"tolerances have {TOLERANCES_SIZE} bytes, not {len(data)}")
        split = TOLERANCES_SIZE - len(GLOBAL_CHECKS) * 4
        cells = np.frombuffer(data[:split], dtype=np.uint8).astype(np.float32).reshape(-1, CELLS, CELLS)
        scalars = np.frombuffer(data[split:], dtype="<f4").astype(np.float64)
        if not (np.isfinite(scalars).all() and (scalars >= 0).all()):
            raise ValueError("a global tolerance is negative or not a finite number")
        luma, chroma, detail_loss, detail_gain = (plane * _STEP for plane in cells)
        contrast, colour, colour_error, hue = (float(value) for value in scalars)
        return cls(luma, chroma, detail_loss, detail_gain, contrast, colour, colour_error, hue)


class Visual(Protocol):
    """What the verifier compares: a query `Fingerprint`, or a stored row (read-only)."""

    @property
    def signature(self) -> bytes: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def has_alpha(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class Deviation:
    """How far one signature is from another, per check (see the module docstring)."""

    gain: float
    mean_shift: float
    luma: np.ndarray
    chroma: np.ndarray
    detail_loss: np.ndarray
    detail_gain: np.ndarray
    contrast: float
    colour: float
    colour_error: float
    hue: float


def deviation(query: Signature, cached: Signature) -> Deviation:
    """Compare `query` with `cached` after the brightness gain between them."""
    gain = float((query.luma * cached.luma).sum() / max(float((cached.luma**2).sum()), 1e-6))
    gain = max(gain, 1e-3)
    detail = query.detail - gain * cached.detail
    cb, cr = gain * cached.cb, gain * cached.cr
    colour_moved = np.hypot(query.cb - cb, query.cr - cr)
    dot = float((query.cb * cb + query.cr * cr).sum())
    cross = float((cb * query.cr - cr * query.cb).sum())
    return Deviation(
        gain=abs(math.log(gain)),
        mean_shift=abs(query.mean - cached.mean),
        luma=np.abs(query.luma - gain * cached.luma),
        chroma=colour_moved,
        detail_loss=np.maximum(-detail, 0.0),
        detail_gain=np.maximum(detail, 0.0),
        contrast=abs(math.log((query.spread + 1.0) / (gain * cached.spread + 1.0))),
        colour=abs(math.log((query.colourfulness + 1.0) / (gain * cached.colourfulness + 1.0))),
        colour_error=float((colour_moved**2).sum() / max(float((cb * cb + cr * cr).sum()), 1.0)),
        hue=abs(math.atan2(cross, dot)) if dot or cross else 0.0,
    )


def scores(query: Visual, cached: Visual) -> dict[str, float]:
    """Each check's worst deviation as a share of what it allows: above 1 fails.

    `cached.signature` must hold a signature and its tolerances (`reference_bytes`).
    """
    reference, allowed = split_reference(cached.signature)
    found = deviation(Signature.from_bytes(query.signature), reference)
    aspect = abs(math.log((query.width * cached.height) / (query.height * cached.width)))
    out = {
        "aspect": aspect / ASPECT_TOLERANCE,
        "brightness": min(found.gain / GAIN_TOLERANCE, found.mean_shift / DARK_SHIFT),
    }
    for name in CELL_CHECKS:
        out[name] = float(np.max(getattr(found, name) / np.maximum(getattr(allowed, name), 1e-6)))
    for name in GLOBAL_CHECKS:
        out[name] = getattr(found, name) / max(getattr(allowed, name), 1e-6)
    return out


def mismatch(query: Visual, cached: Visual) -> str | None:
    """The first check that `query` fails against `cached`, or None when they agree."""
    if query.has_alpha != cached.has_alpha:
        return "alpha"
    if len(cached.signature) != REFERENCE_SIZE:
        return "uncalibrated"
    return next((name for name, score in scores(query, cached).items() if score > 1.0), None)


def reference_bytes(signature: bytes, tolerances: Tolerances) -> bytes:
    """What a stored row keeps: the signature, then its tolerances."""
    return signature + tolerances.to_bytes()


def split_reference(data: bytes) -> tuple[Signature, Tolerances]:
    return Signature.from_bytes(data[:SIGNATURE_SIZE]), Tolerances.from_bytes(data[SIGNATURE_SIZE:])
