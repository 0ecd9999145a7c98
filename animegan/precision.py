"""Choosing float32 or bfloat16 for inference.

bfloat16 roughly halves memory traffic and, on CPUs with native bf16 dot products
(AVX512-BF16 or AMX), runs the convolutions several times faster. On CPUs without them it
is emulated and slower than float32, so "auto" uses it only where it is native *and* a
start-up check on a synthetic photo-like image shows the output still matches float32.
"""

from __future__ import annotations

import copy
import math
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from animegan.precision_choices import PRECISIONS, Precision

__all__ = ["DTYPES", "PRECISIONS", "Precision", "native_bf16", "resolve_precision", "to_precision"]

DTYPES: dict[Precision, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
# 45 dB on a [-1, 1] image is an RMS error of about 0.1 grey level in 8 bits: invisible.
BF16_MIN_PSNR_DB = 45.0
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 in hardware."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(_cpu_flags() & _NATIVE_BF16_FLAGS)


def psnr(a: Tensor, b: Tensor, peak: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB; ``peak`` is the value range (2 for [-1, 1])."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def probe_image(size: int = 128) -> Tensor:
    """A deterministic photo-like test card in [-1, 1], (1, 3, size, size).

    Smooth gradients, hard-edged shapes and fine texture, so both flat regions and edges
    are exercised without shipping a photo inside the package.
    """
    gen = torch.Generator().manual_seed(1234)
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    disk = ((xx - 0.3) ** 2 + (yy + 0.2) ** 2 < 0.15).float()
    square = ((xx + 0.4).abs() < 0.25).float() * ((yy - 0.4).abs() < 0.25).float()
    texture = 0.15 * torch.sin(23 * xx) * torch.cos(17 * yy)
    noise = 0.05 * torch.randn((3, size, size), generator=gen)
    image = torch.stack(
        [0.6 * xx + 0.8 * disk - 0.2, 0.5 * yy + 0.7 * square, 0.3 - 0.4 * xx * yy - 0.5 * disk]
    )
    return (image + texture + noise).clamp(-1, 1).unsqueeze(0)


def to_precision(model: torch.nn.Module, precision: Precision, device: str) -> torch.nn.Module:
    """Move ``model`` to ``device`` and ``precision``, channels-last (oneDNN's fast layout)."""
    # Module.to takes memory_format (it forwards it to each tensor); torch's stubs omit it.
    return model.to(device=device, dtype=DTYPES[precision], memory_format=torch.channels_last)  # type: ignore[call-overload]


@torch.inference_mode()
def bf16_matches_fp32(model: torch.nn.Module, device: str) -> bool:
    """Whether a bfloat16 copy of the float32 ``model`` reproduces it on the probe image."""
    probe = probe_image().to(device)
    reference = model(probe)
    low = to_precision(copy.deepcopy(model), "bf16", device)
    candidate = low(probe.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    return psnr(reference, candidate) >= BF16_MIN_PSNR_DB


def resolve_precision(requested: str, model: torch.nn.Module, device: str) -> Precision:
    """The precision to run: "fp32" and "bf16" as asked; "auto" means bf16 where the device
    computes it natively and ``bf16_matches_fp32`` passes, else fp32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested != "auto":
        return requested  # type: ignore[return-value]
    return "bf16" if native_bf16(device) and bf16_matches_fp32(model, device) else "fp32"
