"""The precisions a user may ask for, in a module without torch.

`animegan.precision` (which needs torch) uses them to choose; the settings and the CLI's
`--help` list them without loading torch.
"""

from __future__ import annotations

from typing import Literal

#: What a model runs in.
Precision = Literal["fp32", "bf16"]
#: What a user may ask for: "auto" lets `animegan.precision.resolve_precision` choose.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
