"""Overlapping tiles with feathered blending, so memory stays bounded for any image size.

Each tile is run through the model on its own; where tiles overlap, their outputs are mixed
with raised-cosine weights that fall to almost zero at a tile's inner edges, where the model
saw reflection padding instead of the real neighbourhood. Whole-image statistics are the
caller's business (see ``animegan.norm``): this module only cuts, runs and blends.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# Runs one tile; gets the tile and its (top, left) offset in the whole image.
TileForward = Callable[[Tensor, tuple[int, int]], Tensor]
Progress = Callable[[float], None]


def tile_starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length``, each a multiple of ``align``.

    Neighbouring tiles overlap by at least ``overlap``; the first starts at 0 and the last
    ends at ``length``. ``length`` and ``tile`` must be multiples of ``align``.
    """
    if length <= tile:
        return [0]
    max_step = tile - overlap - align  # alignment may lengthen a step by up to align - 1
    if max_step <= 0:
        raise ValueError(f"tile {tile} too small for overlap {overlap}")
    count = math.ceil((length - tile) / max_step) + 1
    span = length - tile
    return [(i * span // (count - 1)) // align * align for i in range(count - 1)] + [span]


def _ramp(length: int, before: int, after: int) -> Tensor:
    """1-D weights: raised-cosine rise over ``before`` pixels, fall over ``after``, 1 between."""
    weights = torch.ones(length)
    if before:
        weights[:before] = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(before) + 0.5) / before)
    if after:
        weights[length - after :] = torch.flip(_ramp(after, after, 0), dims=[0])
    return weights


def _ramps(starts: list[int], tile: int, length: int) -> list[Tensor]:
    ramps = []
    for i, start in enumerate(starts):
        end = min(start + tile, length)
        before = starts[i - 1] + tile - start if i > 0 else 0
        after = end - starts[i + 1] if i + 1 < len(starts) else 0
        ramps.append(_ramp(end - start, before, after))
    return ramps


def run_tiled(
    forward: TileForward,
    x: Tensor,
    *,
    tile: int,
    overlap: int,
    align: int,
    progress: Progress | None = None,
) -> Tensor:
    """Apply ``forward`` (tile batch of one -> same shape) to ``x`` tile by tile.

    ``x`` is (1, C, H, W) with H and W multiples of ``align``; returns float32 of the same
    shape. ``progress`` gets the finished fraction after every tile.
    """
    _, channels, height, width = x.shape
    ys, xs = tile_starts(height, tile, overlap, align), tile_starts(width, tile, overlap, align)
    y_ramps, x_ramps = _ramps(ys, tile, height), _ramps(xs, tile, width)
    out = torch.zeros((1, channels, height, width), dtype=torch.float32)
    total = torch.zeros((1, 1, height, width), dtype=torch.float32)
    done, count = 0, len(ys) * len(xs)
    for y0, y_ramp in zip(ys, y_ramps, strict=True):
        for x0, x_ramp in zip(xs, x_ramps, strict=True):
            h, w = len(y_ramp), len(x_ramp)
            piece = forward(x[:, :, y0 : y0 + h, x0 : x0 + w], (y0, x0)).float()
            weight = (y_ramp[:, None] * x_ramp[None, :]).view(1, 1, h, w)
            out[:, :, y0 : y0 + h, x0 : x0 + w].addcmul_(piece, weight)
            total[:, :, y0 : y0 + h, x0 : x0 + w].add_(weight)
            done += 1
            if progress is not None:
                progress(done / count)
    return out.div_(total)
