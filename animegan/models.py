"""Build an empty generator for a style's architecture.

Architectures are imported lazily so that a missing or broken optional model (the
white-box port lives in its own module) only matters when that style is used.
"""

from __future__ import annotations

from torch import nn

from animegan.styles import Arch

# Both generators downsample twice by 2: inputs must be padded to a multiple of 4.
ARCH_STRIDE: dict[Arch, int] = {"animeganv2": 4, "whitebox": 4}
# Generators whose forward takes a ``Window`` to resample tiles where the whole image would
# (white-box upsamples by exactly 2 without align-corners, which is shift-invariant anyway).
ARCH_TAKES_WINDOW: dict[Arch, bool] = {"animeganv2": True, "whitebox": False}


def build_model(arch: Arch) -> nn.Module:
    """A freshly initialised generator for ``arch``, ready for ``load_state_dict``."""
    if arch == "animeganv2":
        from animegan.generator import AnimeGANv2Generator

        return AnimeGANv2Generator()
    if arch == "whitebox":
        from animegan.whitebox import WhiteboxGenerator

        return WhiteboxGenerator()
    raise ValueError(f"unknown architecture {arch!r}")
