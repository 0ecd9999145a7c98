"""The OpenVINO engine: a converted model compiled for this CPU, run like the torch one.

The compiled model takes any batch, height and width (converted with dynamic shapes), so
a new photo size costs a shape inference on its first call, never a compile. A size seen
again gets a model compiled for exactly that shape (0.16-0.24 s, once): it ran in 0.65-0.75x
the dynamic model's time on this project's 2-core box, and the last ``FIXED_SHAPES`` of them
are kept (120-145 MB each at 768 px), so a phone's usual photo sizes and a clip's frames run
on them. Both are equally faithful to float32 (42.0 dB at worst over the photos); int8 rounds
a little differently per compile, so the two outputs for one photo differ by about 44 dB,
far below what the near-duplicate tier already serves. Threads are
the same count as torch's (``cpu_threads``: the CPUs this process may use), unpinned, so
the OS can still schedule the app's other threads (hits) between them.

Images above the torch engine's tile budget go to the torch engine, which tiles them with
whole-image normalization statistics frozen from a downscaled pass; this engine runs only
what fits one pass (the default longest side, 768, always does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from animegan.engines.build import RECIPE_VERSION
from animegan.engines.runner import EngineFailure, Progress
from animegan.inference import Stylizer, check_rgb, cpu_threads, to_batch, to_image
from animegan.models import ARCH_STRIDE
from animegan.precision import psnr

log = logging.getLogger(__name__)

#: A batch of frames goes through the model at once only when that measured faster per frame
#: (bench/results/engine.md: it did not, at 320-512 px on 2 cores), else one by one.
BATCH_THROUGH_MODEL = False
#: Least PSNR (dB, on the [-1, 1] range) of the probe against float32 torch, per precision:
#: a guard against a broken conversion, not the fidelity figure (that is the bench's).
MIN_PROBE_PSNR_DB = {"fp32": 60.0, "bf16": 45.0, "int8": 32.0}
#: Input shapes that keep a model compiled for exactly that shape (most recently used first).
FIXED_SHAPES = 2
#: Shapes remembered as seen once (a shape's second sighting compiles it).
_SEEN_SHAPES = 64
#: Fixed-shape compiles may take this long in all at once (about ten of them)...
COMPILE_ALLOWANCE_S = 2.0
#: ...and beyond it, this share of the time the model has run, so that photos of ever-new
#: sizes, or more recurring sizes than ``FIXED_SHAPES``, cannot make every miss pay a compile.
COMPILE_SHARE = 0.1


@cache
def core() -> Any:
    """The process's one OpenVINO runtime."""
    import openvino as ov

    return ov.Core()


def runtime_version() -> str:
    """OpenVINO's major.minor: what may change a compiled model's output."""
    import openvino as ov

    return ".".join(ov.get_version().split(".")[:2])


def read_folder(folder: Path) -> Any:
    """The IR in ``folder``, read into memory (later compiles never touch the store)."""
    return core().read_model(folder / "model.xml")


def compile_model(model: Any, hint: str, shape: tuple[int, ...] | None = None) -> Any:
    """Compile ``model`` for the CPU with inference precision ``hint`` ("bf16" or "f32") for
    whatever is not int8; with ``shape``, for that input shape only."""
    if shape is not None:
        import openvino as ov

        model = model.clone()
        model.reshape({0: ov.PartialShape(list(shape))})
    return core().compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": cpu_threads(),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False,
        },
    )


def compiled_precision(compiled: Any, kind: str) -> str:
    """The precision label of ``compiled`` (built as ``kind``): what the CPU really runs."""
    import openvino as ov

    rest = "bf16" if compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else "fp32"
    if kind == "int8":
        return "int8+bf16" if rest == "bf16" else "int8"
    return rest


def probe_psnr(compiled: Any, folder: Path) -> float:
    """PSNR of ``compiled`` on the stored probe against float32 torch's output for it."""
    probe = np.load(folder / "probe.npy", allow_pickle=False)
    output = compiled(np.ascontiguousarray(probe[0]))[0]
    return psnr(torch.from_numpy(np.asarray(output)), torch.from_numpy(probe[1]))


def _no_compile(shape: tuple[int, ...]) -> Any:
    raise RuntimeError("no fixed-shape compiles")


class FixedShapes:
    """Models compiled for one input shape each, for shapes seen more than once; the most
    recently used ``capacity`` are kept. Not thread-safe: the runner's lock serializes it.

    A shape seen for the first time gets None (the dynamic model runs it, so a one-off size
    never pays a compile); on its second sighting it is compiled, while compiling has taken
    at most ``COMPILE_ALLOWANCE_S`` plus ``COMPILE_SHARE`` of the model's running time (told
    by `ran`): sizes that keep changing cost at most a tenth more, never a compile per miss.
    A compile that fails is logged once and turns this off: the dynamic model runs
    everything, as before.
    """

    def __init__(self, compile_shape: Callable[[tuple[int, ...]], Any], capacity: int = FIXED_SHAPES) -> None:
        self._compile = compile_shape
        self.capacity = capacity
        self._requests: OrderedDict[tuple[int, ...], tuple[Any, Any]] = OrderedDict()
        self._seen: OrderedDict[tuple[int, ...], None] = OrderedDict()
        self._off = capacity <= 0
        self._ran_s = 0.0
        self._compiled_s = 0.0

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The shapes compiled now, least recently used first."""
        return list(self._requests)

    def ran(self, seconds: float) -> None:
        """The model ran for ``seconds`` (either model): what buys later compiles."""
        self._ran_s += seconds

    def request(self, shape: tuple[int, ...]) -> Any | None:
        """The infer request for exactly ``shape``, or None to run the dynamic model."""
        found = self._requests.get(shape)
        if found is not None:
            self._requests.move_to_end(shape)
            return found[1]
        if self._off:
            return None
        if shape not in self._seen:
            self._seen[shape] = None
            if len(self._seen) > _SEEN_SHAPES:
                self._seen.popitem(last=False)
            return None
        if self._compiled_s > COMPILE_ALLOWANCE_S + COMPILE_SHARE * self._ran_s:
            return None
        started = time.perf_counter()
        try:
            compiled = self._compile(shape)
            infer_request = compiled.create_infer_request()
        except Exception as exc:  # the dynamic model still runs every shape
            self._off = True
            log.warning("engine: compiling OpenVINO for a fixed shape failed (%s); dynamic shapes only", exc)
            return None
        finally:
            self._compiled_s += time.perf_counter() - started
        self._requests[shape] = (compiled, infer_request)
        while len(self._requests) > self.capacity:
            self._requests.popitem(last=False)
        return infer_request


class OpenVINORunner:
    """A compiled model for one style. Thread-safe; calls are serialized like torch's."""

    engine = "openvino"

    def __init__(
        self,
        fallback: Stylizer,
        compiled: Any,
        precision: str,
        on_failure: Callable[[OpenVINORunner, BaseException], None],
        compile_shape: Callable[[tuple[int, ...]], Any] | None = None,
    ) -> None:
        self.style = fallback.style
        self.weights_sha256 = fallback.weights_sha256
        self.precision = precision
        #: The engine as the cache namespace names it: runtime version and recipe included.
        self.engine_tag = f"openvino{runtime_version()}-r{RECIPE_VERSION}"
        self.fallback = fallback
        self.max_pixels = fallback.tile_size**2
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        #: Models for shapes seen again (none without ``compile_shape``).
        self.fixed = FixedShapes(compile_shape or _no_compile, FIXED_SHAPES if compile_shape else 0)
        self._stride = ARCH_STRIDE[fallback.style.arch]
        self._on_failure = on_failure
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenVINORunner(style={self.style.name!r}, precision={self.precision!r})"

    def stylize(self, image: Image.Image, progress: Progress | None = None) -> Image.Image:
        """Stylize an RGB image; the result has exactly the input's size."""
        width, height = check_rgb(image)
        if width * height > self.max_pixels:
            return self.fallback.stylize(image, progress)
        if progress is not None:
            progress(0.0)
        y = self._infer(to_batch([image], self._stride))
        if progress is not None:
            progress(1.0)
        return to_image(y[:, :, :height, :width])

    def stylize_batch(self, images: list[Image.Image]) -> list[Image.Image]:
        """Stylize same-size RGB images (video frames)."""
        if not BATCH_THROUGH_MODEL or len(images) < 2:
            return [self.stylize(image) for image in images]
        width, height = check_rgb(images[0])
        if any(image.size != (width, height) for image in images):
            raise ValueError("stylize_batch takes images of one size")
        if width * height * len(images) > self.max_pixels:
            return [self.stylize(image) for image in images]
        y = self._infer(to_batch(images, self._stride))
        return [to_image(y[i : i + 1, :, :height, :width]) for i in range(len(images))]

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        try:
            array = np.ascontiguousarray(x.numpy())
            with self._lock:
                request = self.fixed.request(tuple(array.shape)) or self._request
                started = time.perf_counter()
                output = request.infer({0: array})[0]
                self.fixed.ran(time.perf_counter() - started)
            return torch.from_numpy(np.array(output, dtype=np.float32))
        except Exception as exc:
            self._on_failure(self, exc)
            raise EngineFailure(
                f"The OpenVINO engine failed ({type(exc).__name__}); the torch engine takes over."
            ) from exc
