"""The cached stylize service: one call shared by the UI, the API, the CLI and the benchmarks.

It joins `animegan` (intake and model) and `cache_store` (the two tiers) and owns the
policies that belong to neither: the cache namespace, fitting a near-duplicate's output to
this upload, how many inferences run at once, and how much uncached work may wait.

A request runs in two steps so that the app can keep hits off the inference path:
`prepare` answers from the cache in milliseconds or returns a `Job`; only a `Job` goes to
`finish`, which waits its turn for the model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

from PIL import Image

from animegan.errors import AnimeGANError
from animegan.inference import PIPELINE_VERSION, Stylizer, load_stylizer
from animegan.intake import DEFAULT_MAX_SIDE, Photo, apply_alpha, open_image
from animegan.styles import get_style
from cache_store import Fingerprint, Lookup, ResultCache

from .outcome import Outcome

log = logging.getLogger(__name__)

Source = Union[str, Path, bytes]
Progress = Callable[[float], None]

#: PNG compression for stored results: level 3 is ~3x faster than the default 6 for
#: about 10 % more bytes, which keeps hashing and storing far below 3 % of a miss.
PNG_COMPRESS_LEVEL = 3


class BusyError(AnimeGANError):
    """Too many uncached requests are already waiting for the model."""


@dataclass
class Job:
    """An upload that the cache could not answer: everything `finish` needs."""

    started: float
    style: str
    namespace: str
    stylizer: Stylizer
    photo: Photo
    fingerprint: Fingerprint | None
    use_cache: bool


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def model_view(photo: Photo) -> Image.Image:
    """The image the model sees, with its alpha: what the cache fingerprints."""
    if photo.alpha is None:
        return photo.rgb
    rgba = photo.rgb.copy()
    rgba.putalpha(photo.alpha)
    return rgba


class StylizeService:
    """Stylize uploads through the result cache; safe to call from many threads.

    `cache=None` runs uncached (the CLI's --no-cache, or a cache that could not open).
    At most `inference_workers` inferences run at once in this process, and at most
    `max_pending` uncached requests wait for one; past that, `BusyError`.
    """

    def __init__(
        self,
        cache: ResultCache | None,
        *,
        weights_dir: Path | None = None,
        max_side: int | None = None,
        precision: str = "auto",
        inference_workers: int = 1,
        max_pending: int = 24,
    ) -> None:
        self.cache = cache
        self.weights_dir = weights_dir
        self.max_side = max_side or DEFAULT_MAX_SIDE
        self.precision = precision
        self.max_pending = max_pending
        self._gate = threading.BoundedSemaphore(max(1, inference_workers))
        self._pending = 0
        self._pending_lock = threading.Lock()

    # -- the two steps -------------------------------------------------------------

    def prepare(self, source: Source, style: str, *, use_cache: bool = True) -> Outcome | Job:
        """Answer from the cache, or return the `Job` that `finish` will run.

        Raises `AnimeGANError` subclasses with a user-facing message for a bad upload,
        an unknown style or missing weights.
        """
        started = time.perf_counter()
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        stylizer = self.stylizer(style)
        namespace = self.namespace(stylizer)
        cache = self.cache if use_cache else None
        raw_sha = Fingerprint.raw_key(data)
        if cache is not None:
            hit = cache.lookup_raw(namespace, raw_sha)
            if hit is not None:
                return self._outcome(hit, hit.value, style, started)

        photo = open_image(data, max_side=self.max_side)
        fingerprint = Fingerprint.of(model_view(photo), raw_sha=raw_sha) if self.cache is not None else None
        if cache is not None and fingerprint is not None:
            hit = cache.lookup(namespace, fingerprint)
            if hit is not None:
                return self._outcome(hit, self._fit_hit(hit, photo), style, started)
        return Job(started, style, namespace, stylizer, photo, fingerprint, use_cache)

    def finish(self, job: Job, progress: Progress | None = None) -> Outcome:
        """Run the model for `job` (once, however many identical requests wait on it)."""
        with self._waiting_slot():

            def compute() -> tuple[bytes, dict]:
                with self._gate:
                    output = job.stylizer.stylize(job.photo.rgb, progress=progress)
                if job.photo.alpha is not None:
                    output = apply_alpha(output, job.photo.alpha)
                return encode_png(output), {"width": output.width, "height": output.height}

            if self.cache is None or job.fingerprint is None:
                png, _ = compute()
                return self._generated(job, png, cached=False)
            if not job.use_cache:
                png, meta = compute()
                self.cache.put(job.namespace, job.fingerprint, png, meta)
                return self._generated(job, png, cached=False)
            result = self.cache.get_or_compute(job.namespace, job.fingerprint, compute)
            return self._outcome(result, self._fit_hit(result, job.photo), job.style, job.started)

    def stylize(
        self,
        source: Source,
        style: str,
        *,
        use_cache: bool = True,
        progress: Progress | None = None,
    ) -> Outcome:
        """Both steps in one call, for the CLI and the benchmarks."""
        result = self.prepare(source, style, use_cache=use_cache)
        return result if isinstance(result, Outcome) else self.finish(result, progress)

    # -- models and namespaces -----------------------------------------------------

    def stylizer(self, style: str) -> Stylizer:
        get_style(style)  # an unknown name is a user error, not a missing file
        return load_stylizer(style, weights_dir=self.weights_dir, precision=self.precision)

    def namespace(self, stylizer: Stylizer) -> str:
        """Everything that changes the output, so a new model or setting never hits stale entries."""
        return "|".join(
            [
                stylizer.style.name,
                stylizer.weights_sha256[:16],
                stylizer.precision,
                f"side{self.max_side}",
                PIPELINE_VERSION,
                "png",
            ]
        )

    # -- helpers -------------------------------------------------------------------

    @contextlib.contextmanager
    def _waiting_slot(self) -> Iterator[None]:
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise BusyError(
                    f"The server is busy: {self._pending} photos are waiting for the model. "
                    "Please try again in a minute."
                )
            self._pending += 1
        try:
            yield
        finally:
            with self._pending_lock:
                self._pending -= 1

    @property
    def pending(self) -> int:
        """Uncached requests now waiting for or running on the model."""
        return self._pending

    def _fit_hit(self, hit: Lookup, photo: Photo) -> bytes:
        """The cached output as a miss would have produced it for this upload.

        An identical picture (exact) is served byte for byte. A near-duplicate made from
        another size is resized to this upload's size, and this upload's alpha (if any)
        replaces the cached one.
        """
        if hit.kind in ("exact", "coalesced", "miss"):
            return hit.value
        cached = Image.open(io.BytesIO(hit.value))
        if cached.size == photo.rgb.size and photo.alpha is None:
            return hit.value
        output = cached.convert("RGB")
        if output.size != photo.rgb.size:
            output = output.resize(photo.rgb.size, Image.Resampling.LANCZOS)
        if photo.alpha is not None:
            output = apply_alpha(output, photo.alpha)
        return encode_png(output)

    def _outcome(self, hit: Lookup, png: bytes, style: str, started: float) -> Outcome:
        width, height = _png_size(png)
        return Outcome(
            png=png,
            kind=hit.kind,
            style=style,
            width=width,
            height=height,
            distance=hit.distance,
            threshold=hit.threshold,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _generated(self, job: Job, png: bytes, *, cached: bool) -> Outcome:
        width, height = _png_size(png)
        threshold = self.cache.threshold if self.cache is not None else 0
        return Outcome(
            png=png,
            kind="miss",
            style=job.style,
            width=width,
            height=height,
            threshold=threshold,
            latency_ms=(time.perf_counter() - job.started) * 1000,
            cached=cached,
        )


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header, without decoding the pixels."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size
