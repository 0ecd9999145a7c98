"""What every engine hands the service: a ``Runner``, and the error a faster one may raise.

The torch ``Stylizer`` is a runner; so is ``OpenVINORunner``. The service snapshots one
runner per request and uses it for both the cache namespace (``label``) and the pixels, so
results of two engines never mix, even when the engine switches mid-request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PIL import Image

from animegan.errors import AnimeGANError
from animegan.styles import Style

Progress = Callable[[float], None]


class Runner(Protocol):
    """A loaded model for one style on one engine, at one precision. Thread-safe."""

    @property
    def style(self) -> Style: ...

    @property
    def weights_sha256(self) -> str: ...

    @property
    def engine(self) -> str:
        """Which engine: "torch" or "openvino"."""

    @property
    def precision(self) -> str:
        """What the model runs in: "fp32", "bf16", "int8" (int8, the kept layers in fp32) or
        "int8+bf16"."""

    def stylize(self, image: Image.Image, progress: Progress | None = None) -> Image.Image: ...

    def stylize_batch(self, images: list[Image.Image]) -> list[Image.Image]: ...


def label(runner: Runner) -> str:
    """The runner's part of a cache namespace: engine (with what changes its output) and
    precision, e.g. ``torch-bf16`` or ``openvino2026.4-r2-int8+bf16``."""
    return f"{getattr(runner, 'engine_tag', runner.engine)}-{runner.precision}"


class EngineFailure(AnimeGANError):
    """A faster engine failed at run time; it has been switched off for this process.

    The service retries the request once on ``StyleEngine.current()`` (the torch engine),
    so a user never sees it unless that fails too.
    """
