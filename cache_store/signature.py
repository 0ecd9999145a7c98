"""What a picture looks like at 64 px, cell by cell: the verifier's view of an upload.

pHash only says that two pictures are alike on the whole. Before a near-duplicate is
served, the verifier compares them per cell of a 16 x 16 grid, so that a change confined
to part of the picture (a sticker, a caption, a blurred face) cannot average away:

* luma, the mean brightness of each cell;
* chroma, the mean Cb and Cr of each cell, so a recoloured region is seen, and from which
  the colourfulness and hue of the whole picture follow, to judge colour relative to how
  much colour the picture has;
* detail, the RMS luma gradient of each cell at a 64 px working size: the band where a
  privacy blur removes texture but re-encoding and resizing barely touch it;
* the mean and spread of the luma, for brightness and contrast.

The working image is a tent-weighted area average of the picture (each working pixel
averages a neighbourhood two working pixels wide), computed on whatever resolution the
caller decoded, at least `PREVIEW_SIDE` on the short side. The tent makes the averages move
smoothly when the content moves by a fraction of a pixel, which is what resizing does;
hard box edges would make a cell jump when an edge crosses it.

The signature is 2 KiB, a 16 x 16 mosaic: far coarser than the stylized result the cache
stores anyway, and nothing of the upload beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Side of the square working image and of the cell grid.
WORK_SIDE = 64
CELLS = 16
#: Callers decode the picture to at least this many pixels on its short side (a JPEG can
#: be decoded at 1/2..1/8 scale): three per working pixel. Coarser previews blur the working
#: image unevenly; 256 kept 0.1 % more recall on the contract and cost a 1 MP JPEG's
#: near-duplicate hit about 2 ms more (bench/results/cache.md).
PREVIEW_SIDE = 192
#: ITU-R BT.601, as Pillow's YCbCr: luma and the two centred colour differences.
_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
_PLANES = ("luma", "cb", "cr", "detail")
_GLOBALS = ("mean", "spread", "colourfulness")
#: Bytes of `to_bytes`: four float16 planes, then three float32 scalars.
SIZE = len(_PLANES) * CELLS * CELLS * 2 + len(_GLOBALS) * 4

Box = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class Signature:
    """Per-cell luma, Cb, Cr and detail (16 x 16 float32, 8-bit levels), and the luma's
    mean and standard deviation and the picture's colourfulness (RMS chroma)."""

    luma: np.ndarray
    cb: np.ndarray
    cr: np.ndarray
    detail: np.ndarray
    mean: float
    spread: float
    colourfulness: float
    working_luma: np.ndarray  # the 64 x 64 luma, for the pHash; never stored

    @classmethod
    def of(cls, rgb: Image.Image, box: Box | None = None) -> Signature:
        """The signature of `rgb` (mode RGB). `box` is the part of `rgb` that the whole
        picture covers, in its pixel coordinates (a reduced decode can end inside its last
        column); default: all of it."""
        if rgb.mode != "RGB":
            raise ValueError(f"Signature.of needs an RGB image, not {rgb.mode}")
        rgb, box = _reduced(rgb, box or (0.0, 0.0, float(rgb.width), float(rgb.height)))
        y, cb, cr = np.moveaxis(_working(rgb, box) @ _YCBCR.T, 2, 0)
        return cls(
            luma=_cells(y),
            cb=_cells(cb),
            cr=_cells(cr),
            detail=np.sqrt(_cells(_gradient_energy(y))),
            mean=float(y.mean()),
            spread=float(y.std()),
            colourfulness=float(np.sqrt((cb * cb + cr * cr).mean())),
            working_luma=y,
        )

    def to_bytes(self) -> bytes:
        planes = np.stack([getattr(self, name) for name in _PLANES]).astype("<f2")
        scalars = np.array([getattr(self, name) for name in _GLOBALS], dtype="<f4")
        return planes.tobytes() + scalars.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        if len(data) != SIZE:
            raise ValueError(f"a signature has {SIZE} bytes, not {len(data)}")
        split = SIZE - len(_GLOBALS) * 4
        planes = (
            np.frombuffer(data[:split], dtype="<f2").astype(np.float32).reshape(len(_PLANES), CELLS, CELLS)
        )
        scalars = np.frombuffer(data[split:], dtype="<f4").astype(np.float64)
        if not (np.isfinite(planes).all() and np.isfinite(scalars).all()):
            raise ValueError("a signature holds a value that is not a finite number")
        luma, cb, cr, detail = planes
        mean, spread, colourfulness = (float(value) for value in scalars)
        return cls(luma, cb, cr, detail, mean, spread, colourfulness, np.empty((0, 0), dtype=np.float32))


def _reduced(rgb: Image.Image, box: Box) -> tuple[Image.Image, Box]:
    """Shrink by a whole factor (a plain block average) while the box stays >= PREVIEW_SIDE
    on its short side: the tent average then has less to read, and loses nothing."""
    factor = math.floor(min(box[2] - box[0], box[3] - box[1]) / PREVIEW_SIDE)
    if factor < 2:
        return rgb, box
    return rgb.reduce(factor), (box[0] / factor, box[1] / factor, box[2] / factor, box[3] / factor)


def _working(rgb: Image.Image, box: Box) -> np.ndarray:
    """The 64 x 64 tent-weighted area average of `rgb` over `box`, as float RGB: Pillow's
    bilinear reduction is a triangle filter two output pixels wide. Rounding its output to
    8 bits moves a cell's mean by under a tenth of a level."""
    small = rgb.resize((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR, box=box)
    return np.asarray(small, dtype=np.float32)


def _cells(plane: np.ndarray) -> np.ndarray:
    side = plane.shape[0] // CELLS
    means: np.ndarray = plane.reshape(CELLS, side, CELLS, side).mean(axis=(1, 3))
    return means


def _gradient_energy(y: np.ndarray) -> np.ndarray:
    """Squared forward differences across and down, each pixel's own (0 at the far edges)."""
    energy = np.zeros_like(y)
    energy[:, :-1] += np.square(y[:, 1:] - y[:, :-1])
    energy[:-1, :] += np.square(y[1:, :] - y[:-1, :])
    return energy
