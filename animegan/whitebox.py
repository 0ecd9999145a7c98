"""White-box Cartoonization generator (Wang and Yu, CVPR 2020) as a plain PyTorch module.

The weights were trained in TensorFlow 1, so two TF conventions are reproduced exactly,
otherwise the output drifts visibly from the reference:

* "SAME" padding: symmetric for the stride-1 odd-kernel convs, but for the stride-2 convs
  on even sizes TF puts the single extra pixel at the bottom/right only.
* TF1 legacy bilinear resize (align_corners=False, half_pixel_centers=False): output pixel
  ``i`` samples input ``i / 2``, so even pixels copy the input and odd pixels average two
  neighbours (the last one repeats the edge). PyTorch's default is half-pixel centred.

The generator's raw output is then edge-preserving-smoothed with a guided filter
(r=1, eps=5e-3) guided by the input photo; that filter is part of the model (it is what
gives the flat colour regions) and is included in ``forward``.

The net has no normalization layers and the filter is a 3x3 local operation, so tiled
inference with overlapping margins matches a whole-image run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RECEPTIVE_RADIUS", "SIZE_MULTIPLE", "WhiteboxGenerator"]

SIZE_MULTIPLE = 4
"""H and W must be multiples of this: two stride-2 stages are undone by two 2x upsamples."""

RECEPTIVE_RADIUS = 64
"""An output pixel depends on input pixels at most this far away (measured: 58 up/left,
64 down/right). A tile's output is exact wherever it is this far from the tile's cut
edges, so tiled inference must keep at least this much context around what it keeps."""

_NEG_SLOPE = 0.2
# The paper's eps=5e-3 as the reference graph stores it (float16: 0.005001068...). The
# 1e-6 difference is invisible in an image, but with plain 5e-3 the port only matches the
# reference TFLite to ~2e-4 instead of ~1.5e-5, which would hide real porting errors.
_GUIDED_FILTER_EPS = 0.005001068115234375


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _NEG_SLOPE, inplace=True)


class _Stride2SameConv(nn.Conv2d):
    """3x3 stride-2 conv with TF "SAME" padding on even sizes: one zero row/column,
    bottom/right only (PyTorch's symmetric padding would shift the sampling grid)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, out_ch, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 1, 0, 1)))


class _ResidualBlock(nn.Sequential):
    """conv -> LeakyReLU -> conv, plus identity; no activation after the second conv.

    A Sequential only so that the state-dict keys are ``blocks.i.0`` / ``blocks.i.1``.
    """

    def __init__(self, ch: int) -> None:
        super().__init__(_conv(ch, ch, 3), _conv(ch, ch, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self[1](_lrelu(self[0](x)))


def _conv(in_ch: int, out_ch: int, k: int) -> nn.Conv2d:
    """Stride-1 conv; TF "SAME" for an odd kernel at stride 1 is symmetric k//2 padding."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=k, padding=k // 2)


def _upsample2x_tf_legacy(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear resize with TF1 legacy sampling (input coordinate = output / 2).

    Equals an align_corners=True resize to 2n-1 (which also samples at output / 2)
    followed by repeating the last row and column, which legacy TF clamps to the edge.
    """
    h, w = x.shape[-2:]
    y = F.interpolate(x, size=(2 * h - 1, 2 * w - 1), mode="bilinear", align_corners=True)
    return F.pad(y, (0, 1, 0, 1), mode="replicate")


def _box_mean(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean over the in-image neighbours (zero-padded box sum / box sum of ones)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _guided_filter(guide: torch.Tensor, src: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-channel guided filter with radius 1 (He et al.), as in the reference graph.

    Computed in float32 whatever the input dtype: ``var = E[x^2] - E[x]^2`` cancels
    catastrophically in bfloat16 (8-bit mantissa, ~4e-3 relative error on values near 1,
    about the size of eps), which would make the edge-preserving weights noise.
    Plain NCHW because CPU pooling over 3 channels in channels_last is ~1.5x slower.
    """
    x = guide.float().contiguous()
    y = src.float().contiguous()
    mean_x = _box_mean(x)
    mean_y = _box_mean(y)
    cov_xy = _box_mean(x * y) - mean_x * mean_y
    var_x = _box_mean(x * x) - mean_x * mean_x
    a = cov_xy / (var_x + eps)
    b = mean_y - a * mean_x
    return _box_mean(a) * x + _box_mean(b)


class WhiteboxGenerator(nn.Module):
    """``unet_generator(channel=32, num_blocks=4)`` followed by the guided filter.

    Input: RGB NCHW in [-1, 1], H and W multiples of 4. Output: same shape and dtype,
    clamped to [-1, 1]. The guided filter runs in float32 even when the net runs in
    bfloat16 (see ``_guided_filter``); its result is cast back to the input dtype.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = _conv(3, 32, 7)
        self.conv1 = _Stride2SameConv(32, 32)
        self.conv2 = _conv(32, 64, 3)
        self.conv3 = _Stride2SameConv(64, 64)
        self.conv4 = _conv(64, 128, 3)
        self.blocks = nn.ModuleList(_ResidualBlock(128) for _ in range(4))
        self.conv5 = _conv(128, 64, 3)
        self.conv6 = _conv(64, 64, 3)
        self.conv7 = _conv(64, 32, 3)
        self.conv8 = _conv(32, 32, 3)
        self.conv9 = _conv(32, 3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if x.dim() != 4 or x.shape[1] != 3 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(
                f"WhiteboxGenerator needs an N x 3 x H x W tensor with H and W multiples of "
                f"{SIZE_MULTIPLE}; got shape {tuple(x.shape)}"
            )
        full = _lrelu(self.conv0(x))
        half = _lrelu(self.conv1(full))
        half = _lrelu(self.conv2(half))
        quarter = _lrelu(self.conv3(half))
        quarter = _lrelu(self.conv4(quarter))
        for block in self.blocks:
            quarter = block(quarter)
        quarter = _lrelu(self.conv5(quarter))

        half = _upsample2x_tf_legacy(quarter) + half
        half = _lrelu(self.conv6(half))
        half = _lrelu(self.conv7(half))

        full = _upsample2x_tf_legacy(half) + full
        full = _lrelu(self.conv8(full))
        raw = self.conv9(full)

        out = _guided_filter(x, raw, _GUIDED_FILTER_EPS)
        return out.clamp_(-1.0, 1.0).to(x.dtype)
