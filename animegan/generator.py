"""The AnimeGANv2 generator, laid out so bryandlee/animegan2-pytorch state dicts load strictly.

Module names and nesting (``block_a.1.1.weight``, ``block_c.2.layers.3.bias``...) are the
contract with the upstream weight files; the forward pass follows the same graph: an
encoder to 1/4 resolution, inverted residual blocks, and two align-corners bilinear
resizes back up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from animegan.norm import WholeImageNorm

Padding = int | tuple[int, int, int, int]
# Downsampling convolutions pad one pixel on the right and bottom only (left, right, top, bottom).
DOWN_PAD: Padding = (0, 1, 0, 1)


@dataclass(frozen=True)
class Window:
    """Where a tile sits in the whole (stride-padded) image: sizes and offsets in pixels.

    Needed because align-corners resizing is not shift-invariant: its sampling positions
    depend on the whole image's size, so a tile must sample where the whole-image pass
    would have, or low-resolution features land up to two pixels off near tile seams.
    """

    full_size: tuple[int, int]
    origin: tuple[int, int]

    def scaled(self, factor: int) -> Window:
        """The same window at 1/``factor`` resolution (sizes and offsets divisible by it)."""
        (height, width), (top, left) = self.full_size, self.origin
        return Window((height // factor, width // factor), (top // factor, left // factor))


def _source_positions(
    out_len: int, out_window: Window, in_window: Window, axis: int, in_len: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Align-corners sampling positions, in the input tile, along one axis of the output tile:
    the lower and upper source indices and the weight of the upper one."""
    out_full, in_full = out_window.full_size[axis], in_window.full_size[axis]
    scale = (in_full - 1) / (out_full - 1) if out_full > 1 else 0.0
    positions = torch.arange(out_len, dtype=torch.float64) + out_window.origin[axis]
    positions = (positions * scale - in_window.origin[axis]).clamp(0, in_len - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=in_len - 1)
    return low, high, positions - low


def resize_window(x: Tensor, out_window: Window, in_window: Window, size: tuple[int, int]) -> Tensor:
    """Bilinear align-corners resize of tile ``x`` to ``size`` as part of the whole image.

    Works on a channels-last view, where gathering rows and columns copies contiguous runs
    (several times faster than on the NCHW view).
    """
    y = x.permute(0, 2, 3, 1)
    for axis, dim in ((0, 1), (1, 2)):
        low, high, frac = _source_positions(size[axis], out_window, in_window, axis, y.shape[dim])
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        weight = frac.to(x.dtype).view(shape)
        y = torch.lerp(y.index_select(dim, low), y.index_select(dim, high), weight)
    return y.permute(0, 3, 1, 2)


class ConvNormLReLU(nn.Sequential):
    """Reflection pad, convolution, whole-image norm, LeakyReLU(0.2): indices 0..3."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Padding = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=0, groups=groups, bias=bias),
            WholeImageNorm(out_ch),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: expand 2x (1x1), depthwise 3x3, project (1x1), norm."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        hidden = 2 * in_ch
        self.use_residual = in_ch == out_ch
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, hidden, kernel_size=1, padding=0),
            ConvNormLReLU(hidden, hidden, groups=hidden, bias=True),
            nn.Conv2d(hidden, out_ch, kernel_size=1, bias=False),
            WholeImageNorm(out_ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.use_residual else out


class AnimeGANv2Generator(nn.Module):
    """Maps an RGB batch in [-1, 1] (NCHW) to a stylized batch of the same shape (tanh range).

    Any size of at least 8 px works; multiples of 4 keep the two downsamplings exact.
    """

    def __init__(self) -> None:
        super().__init__()
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3),
            ConvNormLReLU(32, 64, stride=2, padding=DOWN_PAD),
            ConvNormLReLU(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, stride=2, padding=DOWN_PAD),
            ConvNormLReLU(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128),
            InvertedResBlock(128, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            ConvNormLReLU(256, 128),
        )
        self.block_d = nn.Sequential(ConvNormLReLU(128, 128), ConvNormLReLU(128, 128))
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64),
            ConvNormLReLU(64, 64),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, kernel_size=1, bias=False), nn.Tanh())

    def forward(self, x: Tensor, window: Window | None = None) -> Tensor:
        """``window`` says where ``x`` sits when it is one tile of a larger image."""
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_c(self.block_b(out))
        if window is None:
            out = F.interpolate(out, size=half_size, mode="bilinear", align_corners=True)
            out = self.block_d(out)
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)
        else:
            half, quarter = window.scaled(2), window.scaled(4)
            out = self.block_d(resize_window(out, half, quarter, half_size))
            out = resize_window(out, window, half, (x.shape[-2], x.shape[-1]))
        return self.out_layer(self.block_e(out))
