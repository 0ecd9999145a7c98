"""The cached stylize service: one call shared by the UI, the API, the CLI and the benchmarks.

It joins `animegan` (intake and model) and `cache_store` (the two tiers) and owns the
policies that belong to neither: the cache namespace, fitting a near-duplicate's output to
this upload, how many inferences run at once, and how much uncached work may wait.

A request runs in steps so that the app can keep hits off the inference path: `receive`
reads and hashes the file (an exact hit for the very same file ends here) and returns what
it `Received`; `look_up` decodes it only as far as fingerprinting needs (a JPEG at reduced
scale) and answers from the cache in milliseconds or returns a `Job`; only a `Job` goes to
`finish`, which waits its turn for the model and decodes the upload in full. `prepare` is
the first two in one call. After a miss, the new entry is calibrated for the near-duplicate tier in the
background, once the answer is out (`Calibrator`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from animegan.engines import EngineFailure, Runner, StyleEngine, label, load_engine
from animegan.errors import AnimeGANError, ImageError
from animegan.inference import PIPELINE_VERSION
from animegan.intake import DEFAULT_MAX_SIDE, Photo, apply_alpha, fitted_size, open_image, open_preview
from animegan.styles import get_style
from cache_store import PREVIEW_SIDE, Fingerprint, Lookup, ResultCache
from cache_store.calibration import CALIBRATION_SIDE
from cache_store.lookup import Meta

from .calibrator import Calibrator
from .outcome import Outcome

log = logging.getLogger(__name__)

Source = str | Path | bytes
Progress = Callable[[float], None]

#: PNG compression for stored results: level 3 is ~3x faster than the default 6 for
#: about 10 % more bytes, which keeps hashing and storing far below 3 % of a miss.
PNG_COMPRESS_LEVEL = 3
#: Largest upload read, in bytes; the app's upload limit is the same.
MAX_UPLOAD_BYTES = 30 << 20
#: A near-duplicate's output is resized to this upload's size with this filter (see
#: bench/results/cache.md: time against PSNR to what a miss would have produced).
FIT_FILTER = Image.Resampling.BILINEAR


class BusyError(AnimeGANError):
    """Too many uncached requests are already waiting for the model."""


@dataclass
class Received:
    """An upload whose file is not cached: everything `look_up` needs."""

    started: float
    style: str
    namespace: str
    runner: Runner  # snapshot of the style's engine at receive: namespace and pixels agree
    data: bytes
    raw_sha: str
    use_cache: bool
    scope: str | None = None


@dataclass
class Job(Received):
    """An upload that the cache could not answer: everything `finish` needs."""

    fingerprint: Fingerprint | None = None


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def model_view(photo: Photo) -> Image.Image:
    """The image the model sees, with its alpha: what the cache keys."""
    if photo.alpha is None:
        return photo.rgb
    rgba = photo.rgb.copy()
    rgba.putalpha(photo.alpha)
    return rgba


def read_upload(source: Source, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The upload's bytes, refusing more than `limit` before reading them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > limit:
                    raise _too_big(size, limit)
                data = handle.read(limit + 1)
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            raise ImageError(f"Could not open the file {path.name}: {why}.", "not_image") from exc
    if len(data) > limit:
        raise _too_big(len(data), limit)
    return data


def _too_big(size: int, limit: int) -> ImageError:
    return ImageError(
        f"The uploaded file is {size / 2**20:.1f} MB, more than the {limit >> 20} MB allowed; "
        "please upload a smaller photo.",
        "too_large",
    )


class StylizeService:
    """Stylize uploads through the result cache; safe to call from many threads.

    `cache=None` runs uncached (the CLI's --no-cache, or a cache that could not open).
    At most `inference_workers` inferences run at once in this process, and at most
    `max_pending` uncached requests wait for one; past that, `BusyError`. `engine` and
    `precision` choose the model's engine (`animegan.engines.load_engine`); the default here
    is torch, so that results never change engine mid-way for library callers, while the app
    and the CLI pass their setting (default "auto").
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
        engine: str = "torch",
    ) -> None:
        self.cache = cache
        self.weights_dir = weights_dir
        self.max_side = max_side or DEFAULT_MAX_SIDE
        self.precision = precision
        self.engine_choice = engine
        self.max_pending = max_pending
        self.calibrator = Calibrator(inference_workers)
        self._gate = threading.BoundedSemaphore(max(1, inference_workers))
        self._engines: dict[str, StyleEngine] = {}
        self._pending = 0
        self._pending_lock = threading.Lock()

    # -- the two steps -------------------------------------------------------------

    def prepare(
        self,
        source: Source,
        style: str,
        *,
        use_cache: bool = True,
        scope: str | None = None,
        started: float | None = None,
    ) -> Outcome | Job:
        """Answer from the cache, or return the `Job` that `finish` will run: `receive`,
        then `look_up`.

        `scope` keeps the results apart from other scopes' (a visitor's session, say);
        `started` is when the request arrived (`time.perf_counter()`), so that time spent
        queueing counts in its latency. Raises `AnimeGANError` subclasses with a
        user-facing message for a bad upload, an unknown style or missing weights.
        """
        received = self.receive(source, style, use_cache=use_cache, scope=scope, started=started)
        return received if isinstance(received, Outcome) else self.look_up(received)

    def receive(
        self,
        source: Source,
        style: str,
        *,
        use_cache: bool = True,
        scope: str | None = None,
        started: float | None = None,
    ) -> Outcome | Received:
        """The exact hit for this very file, or the `Received` upload to look up: reading and
        hashing the file only, never decoding it, so no upload can make it slow."""
        started = time.perf_counter() if started is None else started
        data = read_upload(source)
        runner = self.engine(style).current()  # once per request: see `Received.runner`
        namespace = self.namespace(runner, scope)
        raw_sha = Fingerprint.raw_key(data)
        if self.cache is not None and use_cache:
            hit = self.cache.lookup_raw(namespace, raw_sha)
            if hit is not None:
                return self._outcome(hit, hit.value, style, started)
        return Received(started, style, namespace, runner, data, raw_sha, use_cache, scope)

    def look_up(self, received: Received) -> Outcome | Job:
        """Decode `received`'s upload as far as fingerprinting needs and answer from the
        cache, or return the `Job` for the model."""
        preview = open_preview(received.data, min_side=PREVIEW_SIDE)  # refuses what open_image refuses
        fingerprint = None
        if self.cache is not None:
            fingerprint = Fingerprint.of(
                preview.image, raw_sha=received.raw_sha, exact=False, box=preview.frame.box, size=preview.size
            )
            hit = None
            if received.use_cache:
                query = fingerprint

                def exact_key() -> str:  # only for a candidate that looks identical to the upload
                    photo = open_image(received.data, max_side=self.max_side)
                    return str(query.keyed(model_view(photo)).pixel_sha)

                hit = self.cache.lookup(received.namespace, fingerprint, pixel_key=exact_key)
            if hit is not None:
                data = received.data
                alpha = (
                    (lambda: open_image(data, max_side=self.max_side).alpha) if preview.has_alpha else _none
                )
                return self._outcome(
                    hit, self._fit_hit(hit, preview.size, alpha), received.style, received.started
                )
        return Job(**vars(received), fingerprint=fingerprint)

    def finish(self, job: Job, progress: Progress | None = None) -> Outcome:
        """Run the model for `job` (once, however many identical requests wait on it).

        The upload is decoded for the model first; if those very pixels were stored
        meanwhile (or in another container), that is an exact hit and the model is not run.
        If a faster engine fails at run time, it has switched itself off: the request is run
        once more on the engine now current (torch), under that engine's namespace.
        """
        try:
            return self._finish(job, progress)
        except EngineFailure as exc:
            log.warning("%s; retrying the request on the torch engine", exc)
            runner = self.engine(job.style).current()
            namespace = self.namespace(runner, job.scope)
            return self._finish(replace(job, runner=runner, namespace=namespace), progress)

    def _finish(self, job: Job, progress: Progress | None) -> Outcome:
        photo = open_image(job.data, max_side=self.max_side)
        cache = self.cache if job.fingerprint is not None else None
        fingerprint = job.fingerprint.keyed(model_view(photo)) if job.fingerprint is not None else None
        if cache is not None and fingerprint is not None and job.use_cache:
            hit = cache.lookup(job.namespace, fingerprint)
            if hit is not None:
                fitted = self._fit_hit(hit, photo.info["size"], lambda: photo.alpha)
                return self._outcome(hit, fitted, job.style, job.started)
        calibration = None

        def compute() -> tuple[bytes, Meta]:
            nonlocal calibration
            if fingerprint is not None:  # measured beside the inference, stored with it
                calibration = self.calibrator.start(
                    fingerprint, lambda: self._calibration_picture(job, photo)
                )
            with self._gate:
                output = job.runner.stylize(photo.rgb, progress=progress)
            if photo.alpha is not None:
                output = apply_alpha(output, photo.alpha)
            return encode_png(output), {"width": output.width, "height": output.height}

        def stored() -> Fingerprint:
            assert fingerprint is not None
            return self.calibrator.result(calibration, fingerprint)

        with self._waiting_slot():
            if cache is None or fingerprint is None:
                png, _ = compute()
                return self._generated(job, png, cached=False)
            if not job.use_cache:
                png, meta = compute()
                cache.put(job.namespace, stored(), png, meta)
                return self._generated(job, png, cached=False)
            result = cache.get_or_compute(job.namespace, fingerprint, compute, stored=stored)
        fitted = self._fit_hit(result, photo.info["size"], lambda: photo.alpha)
        return self._outcome(result, fitted, job.style, job.started)

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

    def close(self) -> None:
        self.calibrator.close()

    # -- models and namespaces -----------------------------------------------------

    def engine(self, style: str) -> StyleEngine:
        """The loaded engine for `style` (looked up once: the look-up checks the weights file)."""
        found = self._engines.get(style)
        if found is None:
            get_style(style)  # an unknown name is a user error, not a missing file
            found = self._engines[style] = load_engine(
                style, weights_dir=self.weights_dir, engine=self.engine_choice, precision=self.precision
            )
        return found

    def stylizer(self, style: str) -> Runner:
        """The runner `style` uses now (loading its engine on first use)."""
        return self.engine(style).current()

    def namespace(self, runner: Runner, scope: str | None = None) -> str:
        """Everything that changes the output, so a new model, engine or setting never hits
        stale entries; with a `scope`, results are shared only within it."""
        parts = [
            runner.style.name,
            runner.weights_sha256[:16],
            label(runner),  # engine and precision, e.g. torch-bf16, openvino2026.4-r2-int8+bf16
            f"side{self.max_side}",
            PIPELINE_VERSION,
            "png",
        ]
        if scope:
            parts.append(f"scope={scope}")
        return "|".join(parts)

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

    def _fit_hit(
        self, hit: Lookup, upload_size: tuple[int, int], alpha: Callable[[], Image.Image | None]
    ) -> bytes:
        """The cached output as a miss would have produced it for this upload.

        An identical picture (exact) is served byte for byte, and so is a near-duplicate
        whose output already has this upload's size, if the upload has no alpha: no decode,
        no re-encode. Otherwise the output is resized to this upload's size, and this
        upload's `alpha()` (if any) replaces the cached one.
        """
        if hit.kind in ("exact", "coalesced", "miss"):
            return hit.value
        target = fitted_size(upload_size, self.max_side)
        mask = alpha()
        if _png_size(hit.value) == target and mask is None:
            return hit.value
        output = Image.open(io.BytesIO(hit.value)).convert("RGB")
        if output.size != target:
            output = output.resize(target, FIT_FILTER)
        return encode_png(apply_alpha(output, mask))

    def _calibration_picture(self, job: Job, photo: Photo) -> Image.Image:
        """What the new entry is calibrated on: the model's view when it is at least the
        calibration size, else the upload decoded to that size (when it has it)."""
        if self.max_side >= CALIBRATION_SIDE:
            return model_view(photo)
        return model_view(open_image(job.data, max_side=CALIBRATION_SIDE))

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


def _none() -> None:
    return None


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header, without decoding the pixels."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size
