"""The engines and precisions a user may ask for, in a module without torch.

`animegan.precision` and `animegan.engines` (which need torch) use them to choose; the
settings and the CLI's `--help` list them without loading torch.
"""

from __future__ import annotations

from typing import Literal

#: What the torch engine runs in.
Precision = Literal["fp32", "bf16"]
#: What the torch engine accepts: "auto" lets `animegan.precision.resolve_precision` choose.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: What a user may ask for: the torch precisions plus "int8" (convolutions in int8, the
#: layers that measure sensitive in bf16 or fp32), which only the OpenVINO engine runs.
ENGINE_PRECISIONS: tuple[str, ...] = (*PRECISIONS, "int8")
#: The engines: "auto" picks the fastest faithful one this machine runs (`animegan.engines`).
ENGINES: tuple[str, ...] = ("auto", "torch", "openvino")
