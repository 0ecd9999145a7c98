"""Stylizers: a loaded generator plus everything needed to run it on a PIL image.

This is the reference engine (eager PyTorch) and the fallback of the faster ones in
``animegan.engines``, which share its image conversions (``to_batch``, ``to_image``).
``load_stylizer`` loads each (style, weights file, precision, device) once, lazily and
thread-safely, and hands out the same ``Stylizer`` afterwards. A ``Stylizer`` pads to the
model's stride by reflection (never stretches), runs large images in tiles with
whole-image normalization statistics frozen from a downscaled pass, and serializes calls
with a lock: the model is stateful while tiling, and two concurrent runs would only fight
over the same cores.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from animegan.errors import ImageError, WeightsCorruptError
from animegan.generator import Window
from animegan.intake import MIN_SIDE, Photo, apply_alpha
from animegan.models import ARCH_STRIDE, ARCH_TAKES_WINDOW, build_model
from animegan.norm import frozen_statistics
from animegan.precision import DTYPES, PRECISIONS, Precision, resolve_precision, to_precision
from animegan.styles import DEFAULT_STYLE, Style, get_style
from animegan.tiling import run_tiled
from animegan.weights import ensure_weights, read_weights

# Bump whenever a change here alters output pixels; result caches are namespaced by it.
PIPELINE_VERSION = "2"
# Pixel budget of one model pass, as the side of a square tile: at the peak a pass then
# holds about 0.8 GB (bf16) or 1.1 GB (fp32) of activations. Larger images are tiled.
TILE_SIZE: dict[Precision, int] = {"fp32": 768, "bf16": 1024}
TILE_OVERLAP = 64

Progress = Callable[[float], None]


class Stylizer:
    """A ready-to-run generator for one style. Safe to share between threads.

    One of ``animegan.engines``' runners: ``engine`` is "torch".
    """

    engine = "torch"

    def __init__(
        self,
        style: Style,
        model: nn.Module,
        weights_sha256: str,
        precision: Precision,
        device: str,
        tile_size: int | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.style = style
        self.weights_sha256 = weights_sha256
        self.precision = precision
        self.device = device
        self._model = model
        self._stride = ARCH_STRIDE[style.arch]
        tile_size = tile_size or TILE_SIZE[precision]
        if tile_size < 8 * self._stride:
            raise ValueError(f"tile_size must be at least {8 * self._stride}, not {tile_size}")
        self.tile_size = tile_size - tile_size % self._stride
        self._takes_window = ARCH_TAKES_WINDOW[style.arch]
        self._dtype = DTYPES[precision]
        self._lock = lock or threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Stylizer(style={self.style.name!r}, precision={self.precision!r}, "
            f"device={self.device!r}, weights_sha256={self.weights_sha256[:12]}...)"
        )

    def stylize(self, image: Image.Image, progress: Progress | None = None) -> Image.Image:
        """Stylize an RGB image; the result has exactly the input's size.

        ``progress`` is called with the finished fraction (0..1) as work proceeds.
        """
        width, height = check_rgb(image)
        x = to_batch([image], self._stride)
        with torch.inference_mode():
            with self._lock:
                y = self._run(x, progress)
            return to_image(y[:, :, :height, :width])

    def stylize_batch(self, images: list[Image.Image]) -> list[Image.Image]:
        """Stylize same-size RGB images (video frames): one at a time, which measured as
        fast per frame as a batch through the model (bench/results/engine.md)."""
        return [self.stylize(image) for image in images]

    def retiled(self, tile_size: int) -> Stylizer:
        """The same model with another tile budget (side of a square tile, in pixels).

        Shares this stylizer's lock, since the model's norm layers are switched while tiling.
        """
        return Stylizer(
            self.style,
            self._model,
            self.weights_sha256,
            self.precision,
            self.device,
            tile_size=tile_size,
            lock=self._lock,
        )

    def stylize_photo(
        self, photo: Photo, max_side: int | None, progress: Progress | None = None
    ) -> Image.Image:
        """Fit ``photo`` to ``max_side`` (None: full size), stylize, restore its alpha."""
        fitted = photo.fit(max_side)
        return apply_alpha(self.stylize(fitted.rgb, progress), fitted.alpha)

    def _run(self, x: Tensor, progress: Progress | None) -> Tensor:
        """Whole image in one pass when it fits the tile budget, else tiles."""
        if progress is not None:
            progress(0.0)
        height, width = x.shape[-2:]
        if height * width <= self.tile_size**2:
            y = self._forward(x)
            if progress is not None:
                progress(1.0)
            return y

        def forward_tile(tile: Tensor, origin: tuple[int, int]) -> Tensor:
            return self._forward(tile, Window((height, width), origin))

        with frozen_statistics(self._model, self._prepare(self._calibration_input(x))):
            return run_tiled(
                forward_tile,
                x,
                tile=self.tile_size,
                overlap=min(TILE_OVERLAP, self.tile_size // 4),
                align=self._stride,
                progress=progress,
            )

    def _calibration_input(self, x: Tensor) -> Tensor:
        """The whole image downscaled to the tile budget, for normalization statistics.

        The statistics of a downscaled image are close to, not equal to, the full-size
        ones (fine texture is lost), so tiled output differs slightly from what an untiled
        run would give: uniformly over the image, without seams (bench/results/engine.md).
        """
        height, width = x.shape[-2:]
        scale = self.tile_size / math.sqrt(height * width)
        size = [max(MIN_SIDE, round(side * scale / self._stride) * self._stride) for side in (height, width)]
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)

    def _prepare(self, x: Tensor) -> Tensor:
        return x.to(self.device, self._dtype).contiguous(memory_format=torch.channels_last)

    def _forward(self, x: Tensor, window: Window | None = None) -> Tensor:
        if window is not None and self._takes_window:
            return self._model(self._prepare(x), window).float().cpu()
        return self._model(self._prepare(x)).float().cpu()


def check_rgb(image: Image.Image) -> tuple[int, int]:
    """``image``'s size, after refusing what no engine runs: another mode, a tiny side."""
    if image.mode != "RGB":
        raise ValueError(f"stylize takes an RGB image, not {image.mode}: use open_image")
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The image is {width}x{height} pixels; each side must be at least {MIN_SIDE}.",
            "too_small",
        )
    return width, height


def to_batch(images: list[Image.Image], stride: int) -> Tensor:
    """(N, 3, H, W) float32 in [-1, 1] from same-size RGB images, reflection-padded to a
    multiple of ``stride`` (never stretched); in place on a fresh array (a 12 MP photo is
    144 MB)."""
    width, height = images[0].size
    array = np.empty((len(images), height, width, 3), dtype=np.float32)  # our own, one copy
    for index, image in enumerate(images):
        array[index] = np.asarray(image)
    x = torch.from_numpy(array).permute(0, 3, 1, 2).div_(127.5).sub_(1.0)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % stride, -width % stride
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x


def _to_tensor(image: Image.Image) -> Tensor:
    """(1, 3, H, W) float32 in [-1, 1], unpadded (the tiling tests cut their own tiles)."""
    return to_batch([image], 1)


def to_image(y: Tensor) -> Image.Image:
    """8-bit RGB from a (1, 3, H, W) tanh-range batch, which is overwritten on the way."""
    pixels = y[0].mul_(127.5).add_(127.5).clamp_(0, 255).round_().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


_threads_configured = False


def cpu_threads() -> int:
    """Compute threads for any engine: OMP_NUM_THREADS when the user set it, else one per CPU
    this process may use (torch and OpenVINO may count the host's cores instead)."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, len(os.sched_getaffinity(0)))


def _configure_threads() -> None:
    """One intra-op thread per CPU this process may use (left alone under OMP_NUM_THREADS)."""
    global _threads_configured
    if _threads_configured or "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(cpu_threads())
    _threads_configured = True


def build_stylizer(style: Style, path: Path, precision: str, device: str) -> Stylizer:
    """Read ``path``, load it strictly into ``style``'s architecture, pick the precision."""
    weights = read_weights(path, style.sha256)
    model = build_model(style.arch)
    try:
        model.load_state_dict(weights.state_dict, strict=True)
    except RuntimeError as exc:
        raise WeightsCorruptError(
            f"The weights file {path} does not fit style {style.name!r} ({style.arch} "
            f"generator): its tensors have other names or shapes. Use the right file."
        ) from exc
    model = model.eval().to(device)
    chosen = resolve_precision(precision, model, device)
    model = to_precision(model, chosen, device)
    return Stylizer(style, model, weights.sha256, chosen, device)


_stylizers: dict[tuple[str, str, str, str], Stylizer] = {}
_load_locks: dict[tuple[str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def load_stylizer(
    style: str = DEFAULT_STYLE,
    weights_dir: str | os.PathLike[str] | None = None,
    precision: str = "auto",
    device: str | None = None,
    *,
    allow_download: bool = True,
) -> Stylizer:
    """The shared ``Stylizer`` for ``style``, loading (or downloading) its weights once.

    ``weights_dir`` is searched first (default: ``ANIMEGAN_WEIGHTS_DIR``), then
    ``./weights`` and the user cache. ``precision`` is "auto", "fp32" or "bf16"; ``device``
    defaults to CUDA when available. Raises ``UnknownStyleError`` or a ``WeightsError``.
    """
    chosen_style = get_style(style)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = device or default_device()
    _configure_threads()
    with _registry_lock:
        lock = _load_locks.setdefault((chosen_style.name, device), threading.Lock())
    with lock:  # concurrent first calls wait here instead of loading twice
        path = ensure_weights(chosen_style, weights_dir, allow_download=allow_download)
        key = (chosen_style.name, str(path.resolve()), precision, device)
        stylizer = _stylizers.get(key)
        if stylizer is None:
            stylizer = _stylizers[key] = build_stylizer(chosen_style, path, precision, device)
        return stylizer
