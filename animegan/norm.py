"""Whole-image normalization whose statistics can be frozen, so tiles see the whole image.

AnimeGANv2 normalizes with GroupNorm(1 group): one mean and one variance over the whole
feature map. Run tile by tile, every tile would get its own statistics and its own colour
cast. ``frozen_statistics`` records each layer's two numbers once on a downscaled copy of
the whole image, then lets the tiles reuse them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormMode = Literal["live", "record", "frozen"]


class WholeImageNorm(nn.GroupNorm):
    """``GroupNorm(1, channels)`` (same state dict keys) that can record and reuse statistics.

    ``live``: ordinary GroupNorm. ``record``: ordinary GroupNorm that also keeps the batch of
    one's mean and variance. ``frozen``: normalizes with the kept mean and variance.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__(num_groups=1, num_channels=num_channels, affine=True)
        self.mode: NormMode = "live"
        self.stats: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "live":
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        if self.mode == "record":
            var, mean = torch.var_mean(x.float(), dim=(1, 2, 3), unbiased=False)
            self.stats = (mean, var)
        assert self.stats is not None, "frozen mode needs recorded statistics"
        mean, var = self.stats
        scale = self.weight.float() * torch.rsqrt(var + self.eps)
        shift = self.bias.float() - mean * scale
        return torch.addcmul(shift.to(x.dtype).view(1, -1, 1, 1), x, scale.to(x.dtype).view(1, -1, 1, 1))


@contextmanager
def frozen_statistics(model: nn.Module, calibration: Tensor) -> Iterator[None]:
    """Within the block, ``model``'s whole-image norms use statistics taken on ``calibration``.

    ``calibration`` is the whole image as a batch of one, small enough for one pass. Models
    without such norms (their tiles are independent anyway) are left as they are and not
    run. Live statistics are restored on exit, also on error.
    """
    norms = [m for m in model.modules() if isinstance(m, WholeImageNorm)]
    if not norms:
        yield
        return
    try:
        for norm in norms:
            norm.mode = "record"
        model(calibration)
        for norm in norms:
            norm.mode = "frozen"
        yield
    finally:
        for norm in norms:
            norm.mode = "live"
            norm.stats = None
