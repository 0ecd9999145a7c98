"""Photo-to-anime stylization engine (AnimeGANv2 and White-box generators, PyTorch).

The light parts (styles, errors, image intake) are imported eagerly; the torch-backed
parts (``load_stylizer``, ``load_engine``, weights handling) load on first attribute access,
so a UI can list styles and validate uploads without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from animegan.errors import (
    AnimeGANError,
    ChecksumMismatchError,
    ImageError,
    UnknownStyleError,
    VideoError,
    WeightsCorruptError,
    WeightsError,
    WeightsNotFoundError,
)
from animegan.intake import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, Photo, apply_alpha, open_image
from animegan.styles import DEFAULT_STYLE, STYLES, Style, get_style

if TYPE_CHECKING:
    from animegan.engines import EngineFailure as EngineFailure
    from animegan.engines import Runner as Runner
    from animegan.engines import StyleEngine as StyleEngine
    from animegan.engines import load_engine as load_engine
    from animegan.inference import PIPELINE_VERSION as PIPELINE_VERSION
    from animegan.inference import Stylizer as Stylizer
    from animegan.inference import load_stylizer as load_stylizer
    from animegan.weights import available_styles as available_styles
    from animegan.weights import ensure_weights as ensure_weights

_LAZY = {
    "EngineFailure": "animegan.engines",
    "Runner": "animegan.engines",
    "StyleEngine": "animegan.engines",
    "load_engine": "animegan.engines",
    "PIPELINE_VERSION": "animegan.inference",
    "Stylizer": "animegan.inference",
    "load_stylizer": "animegan.inference",
    "available_styles": "animegan.weights",
    "ensure_weights": "animegan.weights",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_STYLE",
    "STYLES",
    "AnimeGANError",
    "ChecksumMismatchError",
    "ImageError",
    "Photo",
    "Style",
    "UnknownStyleError",
    "VideoError",
    "WeightsCorruptError",
    "WeightsError",
    "WeightsNotFoundError",
    "apply_alpha",
    "get_style",
    "open_image",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'animegan' has no attribute {name!r}")
