"""The cached stylize service: one call shared by the UI, the API, the CLI and the benchmarks.

It joins `animegan` (decoding and the model) and `cache_store` (the two tiers) and owns
the policies that belong to neither: the cache namespace, fitting a near-duplicate's output
to this upload, who gets the decoders and the model next, and how much uncached work may
wait.

A request runs in steps so that the app can keep hits off the inference path: `receive`
reads and hashes the file (an exact hit for the very same file ends here) and returns what
it `Received`; `look_up` has a worker process decode it only as far as fingerprinting
needs (a JPEG at reduced scale) and answers from the cache in milliseconds or returns a
`Job`; only a `Job` goes to `finish`, which has a worker decode the upload for the model and
waits its turn for it. `prepare` is the first two in one call. The server never decodes an
upload itself (`animegan.isolated`): a crafted file costs a worker its CPU budget, never
the server its memory or its GIL.

Decoders and the model are shared fairly (`fairness`): callers name their `Client`, and
waiting clients take turns. After a miss, the new entry is calibrated for the
near-duplicate tier beside the inference (`Calibrator`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from animegan.engines import EngineFailure, Runner, StyleEngine, label, load_engine
from animegan.errors import AnimeGANError
from animegan.formats import is_photo
from animegan.inference import PIPELINE_VERSION
from animegan.intake import DEFAULT_MAX_SIDE, Photo, apply_alpha, fitted_size
from animegan.isolated import DEFAULT_WORKER_MEMORY, DEFAULT_WORKERS, IsolatedDecoder, Upload
from animegan.safe_decode import not_an_image
from animegan.styles import get_style
from cache_store import PREVIEW_SIDE, Fingerprint, Lookup, ResultCache
from cache_store.calibration import CALIBRATION_SIDE
from cache_store.lookup import Meta

from .calibrator import Calibrator
from .fairness import ClientBusyError, FairSlots, InFlight
from .outcome import Outcome
from .progress import Progress, model_progress

log = logging.getLogger(__name__)

Source = str | Path | bytes

#: PNG compression for stored results: level 3 is ~3x faster than the default 6 for
#: about 10 % more bytes, which keeps hashing and storing far below 3 % of a miss.
PNG_COMPRESS_LEVEL = 3
#: Largest upload read, in bytes; the app's upload limit is the same.
MAX_UPLOAD_BYTES = 30 << 20
#: A near-duplicate's output is resized to this upload's size with this filter (see
#: bench/results/cache.md: time against PSNR to what a miss would have produced).
FIT_FILTER = Image.Resampling.BILINEAR
#: A near-duplicate is served only if its stored output is at least this share of the size
#: this upload's output needs: enlarging a small entry's output (a 0.45x copy stylized
#: first, then the full photo) blurs it well below a re-encode's difference.
MIN_FIT_SCALE = 0.9
#: Requests one client may have decoding or waiting for the model at once: per browser
#: session (or API client), and per network address (all its sessions together).
PER_SESSION = 3
PER_ADDRESS = 8
#: How uploads are named in messages.
UPLOAD_SUBJECT = "The uploaded file"


class BusyError(AnimeGANError):
    """Too many uncached requests are already waiting for the model."""


class ClientLimitError(AnimeGANError):
    """This visitor already has as many photos in progress as one visitor may."""


@dataclass(frozen=True)
class Client:
    """Who sent a request, for sharing the decoders and the model fairly: the browser
    session (or API client) and the network address; None where unknown (the CLI)."""

    session: str | None = None
    address: str | None = None

    @property
    def key(self) -> str:
        return self.session or self.address or "local"

    def cache_client(self, scope: str | None) -> str | None:
        """Who asks, as the cache's eviction tells clients apart; within a private scope
        only the same visitor ever hits, so no client is named there."""
        return None if scope else (self.address or self.session)


LOCAL = Client()


@dataclass
class Received:
    """An upload whose file is not cached: everything `look_up` needs."""

    started: float
    style: str
    namespace: str
    runner: Runner  # snapshot of the style's engine at receive: namespace and pixels agree
    upload: Upload
    use_cache: bool
    client: Client
    warm_up: bool = False  # the app's own example: pinned in the cache, and not counted
    cache_client: str | None = None  # who asks, as the cache's eviction tells clients apart
    scope: str | None = None


@dataclass
class Job(Received):
    """An upload that the cache could not answer: everything `finish` needs."""

    fingerprint: Fingerprint | None = None


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


class StylizeService:
    """Stylize uploads through the result cache; safe to call from many threads.

    `cache=None` runs uncached (the CLI's --no-cache, or a cache that could not open).
    At most `inference_workers` inferences run at once in this process, and at most
    `max_pending` uncached requests wait for one; past that, `BusyError`. Uploads are
    decoded by `decode_workers` worker processes of `decode_memory` bytes each, started
    on first use. `engine` and `precision` choose the model's engine
    (`animegan.engines.load_engine`); the default here is torch, so that results never
    change engine mid-way for library callers, while the app and the CLI pass their setting
    (default "auto").
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
        decode_workers: int = DEFAULT_WORKERS,
        decode_memory: int = DEFAULT_WORKER_MEMORY,
        per_session: int = PER_SESSION,
        per_address: int = PER_ADDRESS,
        engine: str = "torch",
    ) -> None:
        self.cache = cache
        self.weights_dir = weights_dir
        self.max_side = max_side or DEFAULT_MAX_SIDE
        self.precision = precision
        self.engine_choice = engine
        self.max_pending = max_pending
        self.calibrator = Calibrator(inference_workers)
        self.model_slots = FairSlots(max(1, inference_workers))
        self.decode_slots = FairSlots(max(1, decode_workers))
        self.in_flight = InFlight({"session": per_session, "address": per_address})
        self._decode_workers = max(1, decode_workers)
        self._decode_memory = decode_memory
        self._decoder: IsolatedDecoder | None = None
        self._decoder_lock = threading.Lock()
        self._engines: dict[str, StyleEngine] = {}
        self._pending = 0
        self._pending_lock = threading.Lock()

    # -- the steps -----------------------------------------------------------------

    def prepare(
        self,
        source: Source,
        style: str,
        *,
        use_cache: bool = True,
        scope: str | None = None,
        started: float | None = None,
        client: Client = LOCAL,
        subject: str | None = None,
        warm_up: bool = False,
    ) -> Outcome | Job:
        """Answer from the cache, or return the `Job` that `finish` will run: `receive`,
        then `look_up`.

        `scope` keeps the results apart from other scopes' (a visitor's session, say);
        `started` is when the request arrived (`time.perf_counter()`), so that time spent
        queueing counts in its latency. `warm_up` marks the app's own examples: pinned in
        the cache, and not counted in its statistics. Raises `AnimeGANError` subclasses with
        a user-facing message for a bad upload, an unknown style or missing weights.
        """
        received = self.receive(
            source,
            style,
            use_cache=use_cache,
            scope=scope,
            started=started,
            client=client,
            subject=subject,
            warm_up=warm_up,
        )
        return received if isinstance(received, Outcome) else self.look_up(received)

    def receive(
        self,
        source: Source,
        style: str,
        *,
        use_cache: bool = True,
        scope: str | None = None,
        started: float | None = None,
        client: Client = LOCAL,
        subject: str | None = None,
        warm_up: bool = False,
    ) -> Outcome | Received:
        """The exact hit for this very file, or the `Received` upload to look up: reading and
        hashing the file only, never decoding it, so no upload can make it slow.

        `subject` names the file in messages (default: "The uploaded file" for bytes, "The
        file <name>" for a path given by a local user, as the CLI does).
        """
        started = time.perf_counter() if started is None else started
        upload = Upload.read(source, limit=MAX_UPLOAD_BYTES, subject=subject or _subject(source))
        runner = self.stylizer(style)  # once per request: see `Received.runner`
        namespace = self.namespace(runner, scope)
        cache_client = client.cache_client(scope)
        received = Received(
            started, style, namespace, runner, upload, use_cache, client, warm_up, cache_client, scope
        )
        if self.cache is not None and use_cache:
            hit = self.cache.lookup_raw(namespace, upload.sha256, client=cache_client, pinned=warm_up)
            if hit is not None:
                return self._outcome(hit, hit.value, received)
        return received

    def look_up(self, received: Received) -> Outcome | Job:
        """Decode `received`'s upload as far as fingerprinting needs and answer from the
        cache, or return the `Job` for the model."""
        upload = received.upload
        if not is_photo(upload.format):  # refused before any parser sees it
            raise not_an_image(upload.subject)
        with self.decode_slots.slot(received.client.key):
            preview = self.decoder.preview(upload, min_side=PREVIEW_SIDE)
        fingerprint = None
        if self.cache is not None:
            fingerprint = Fingerprint.of(
                preview.image, raw_sha=upload.sha256, exact=False, box=preview.frame.box, size=preview.size
            )
            hit = None
            if received.use_cache:
                query = fingerprint

                def exact_key() -> str:  # only for a candidate that looks identical to the upload
                    return str(query.keyed(self._photo(received).with_alpha()).pixel_sha)

                hit = self.cache.lookup(
                    received.namespace,
                    fingerprint,
                    pixel_key=exact_key,
                    min_source_side=self._min_source_side(preview.size),
                    client=received.cache_client,
                    pinned=received.warm_up,
                )
            if hit is not None:
                alpha = (lambda: self._photo(received).alpha) if preview.has_alpha else _none
                return self._outcome(hit, self._fit_hit(hit, preview.size, alpha), received)
        return Job(**vars(received), fingerprint=fingerprint)

    def finish(self, job: Job, progress: Progress | None = None) -> Outcome:
        """Run the model for `job` (once, however many identical requests wait on it).

        The upload is decoded for the model first; if those very pixels were stored
        meanwhile (or in another container), that is an exact hit and the model is not run.
        `progress(fraction, stage)` hears how far the request is. If a faster engine fails
        at run time, it has switched itself off: the request runs once more on the engine now
        current (torch), under that engine's namespace.
        """
        try:
            return self._finish(job, progress)
        except EngineFailure as exc:
            log.warning("%s; retrying the request on the torch engine", exc)
            runner = self.stylizer(job.style)
            namespace = self.namespace(runner, job.scope)
            return self._finish(replace(job, runner=runner, namespace=namespace), progress)

    def _finish(self, job: Job, progress: Progress | None) -> Outcome:
        with self._waiting_slot():
            photo, also = self._photo_and_calibration(job)
            cache = self.cache if job.fingerprint is not None else None
            view = photo.with_alpha()  # what the cache keys and calibrates on
            fingerprint = job.fingerprint.keyed(view) if job.fingerprint is not None else None
            min_side = self._min_source_side(photo.info["size"])
            if cache is not None and fingerprint is not None and job.use_cache:
                hit = cache.lookup(
                    job.namespace,
                    fingerprint,
                    min_source_side=min_side,
                    client=job.cache_client,
                    pinned=job.warm_up,
                )
                if hit is not None:
                    fitted = self._fit_hit(hit, photo.info["size"], lambda: photo.alpha)
                    return self._outcome(hit, fitted, job)
            calibration = None

            def compute() -> tuple[bytes, Meta]:
                nonlocal calibration
                if fingerprint is not None:  # measured beside the inference, stored with it
                    picture = also if also is not None else view
                    calibration = self.calibrator.start(fingerprint, lambda: picture)
                output = self.run_model(job.runner, photo.rgb, job.client, progress)
                if photo.alpha is not None:
                    output = apply_alpha(output, photo.alpha)
                return encode_png(output), {"width": output.width, "height": output.height}

            def stored() -> Fingerprint:
                assert fingerprint is not None
                return self.calibrator.result(calibration, fingerprint)

            if cache is None or fingerprint is None:
                png, _ = compute()
                return self._generated(job, png, cached=False)
            if not job.use_cache:
                png, meta = compute()
                cache.put(job.namespace, stored(), png, meta, client=job.cache_client, pinned=job.warm_up)
                return self._generated(job, png, cached=False)
            result = cache.get_or_compute(
                job.namespace,
                fingerprint,
                compute,
                stored=stored,
                min_source_side=min_side,
                client=job.cache_client,
                pinned=job.warm_up,
            )
        fitted = self._fit_hit(result, photo.info["size"], lambda: photo.alpha)
        return self._outcome(result, fitted, job)

    def stylize(
        self,
        source: Source,
        style: str,
        *,
        use_cache: bool = True,
        progress: Progress | None = None,
        subject: str | None = None,
    ) -> Outcome:
        """Both steps in one call, for the CLI and the benchmarks."""
        result = self.prepare(source, style, use_cache=use_cache, subject=subject)
        return result if isinstance(result, Outcome) else self.finish(result, progress)

    @contextlib.contextmanager
    def admitted(self, client: Client) -> Iterator[None]:
        """Count a request of `client`'s that needs decoding or the model against its caps;
        raises `ClientLimitError` when it already has as many in progress as it may."""
        try:
            with self.in_flight.hold([("session", client.session or ""), ("address", client.address or "")]):
                yield
        except ClientBusyError as exc:
            caps = self.in_flight.caps
            which = "this browser tab" if str(exc) == "session" else "your network address"
            raise ClientLimitError(
                f"You already have {caps[str(exc)]} photos in progress from {which}; "
                "please wait until one of them is done."
            ) from None

    def close(self) -> None:
        self.calibrator.close()
        with self._decoder_lock:
            decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.close()

    # -- models, decoders and namespaces -------------------------------------------

    @property
    def decoder(self) -> IsolatedDecoder:
        """The worker processes that decode uploads, started on first use."""
        with self._decoder_lock:
            if self._decoder is None:
                self._decoder = IsolatedDecoder(self._decode_workers, self._decode_memory)
            return self._decoder

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

    def namespace(self, runner: Runner, scope: str | None = None, *, max_side: int | None = None) -> str:
        """Everything that changes the output, so a new model or setting never hits stale
        entries; with a `scope`, results are shared only within it. `max_side` is the side
        pictures are fitted to (default: this service's; a clip's frames have their own)."""
        parts = [
            runner.style.name,
            runner.weights_sha256[:16],
            label(runner),  # engine and precision, e.g. torch-bf16, openvino2026.4-r2-int8+bf16
            f"side{max_side or self.max_side}",
            PIPELINE_VERSION,
            "png",
        ]
        if scope:
            parts.append(f"scope={scope}")
        return "|".join(parts)

    # -- helpers -------------------------------------------------------------------

    def _photo(self, received: Received) -> Photo:
        """`received`'s upload decoded as the model sees it (in a worker, in turn)."""
        photo, _ = self._decode_photo(received, None)
        return photo

    def _photo_and_calibration(self, job: Job) -> tuple[Photo, Image.Image | None]:
        """The model's view and, if it is smaller than the calibration size and the cache
        will calibrate the new entry, the upload fitted to that size too (one job)."""
        also = CALIBRATION_SIDE if job.fingerprint is not None and self.max_side < CALIBRATION_SIDE else None
        return self._decode_photo(job, also)

    def _decode_photo(self, received: Received, also: int | None) -> tuple[Photo, Image.Image | None]:
        with self.decode_slots.slot(received.client.key):
            return self.decoder.photo(received.upload, max_side=self.max_side, also_side=also)

    def run_model(
        self, runner: Runner, rgb: Image.Image, client: Client, progress: Progress | None = None
    ) -> Image.Image:
        """`runner`'s output for `rgb`, once `client`'s turn for the model has come;
        `progress` hears the wait ("N ahead") and the pass."""

        def waiting(ahead: int) -> None:
            if progress is not None:
                progress(0.0, f"Waiting for the model ({ahead} ahead)")

        with self.model_slots.slot(client.key, on_wait=waiting):
            model = f"{runner.style.name}|{label(runner)}"
            with model_progress(progress, rgb.size, model) as report:
                return runner.stylize(rgb, progress=report)

    def _min_source_side(self, upload_size: tuple[int, int]) -> int:
        """The longer side an entry's source needs for its output to serve this upload."""
        return math.ceil(MIN_FIT_SCALE * max(fitted_size(upload_size, self.max_side)))

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

    def _outcome(self, hit: Lookup, png: bytes, request: Received) -> Outcome:
        width, height = _png_size(png)
        return self._counted(
            Outcome(
                png=png,
                kind=hit.kind,
                style=request.style,
                width=width,
                height=height,
                distance=hit.distance,
                threshold=hit.threshold,
                latency_ms=(time.perf_counter() - request.started) * 1000,
            ),
            request,
        )

    def _counted(self, outcome: Outcome, request: Received) -> Outcome:
        """`outcome`, counted once in the cache's statistics with the badge's latency (the
        app's own warm-up is not a visitor's request)."""
        if self.cache is not None and not request.warm_up:
            self.cache.record(outcome.kind, outcome.latency_ms)
        return outcome

    def _generated(self, job: Job, png: bytes, *, cached: bool) -> Outcome:
        width, height = _png_size(png)
        threshold = self.cache.threshold if self.cache is not None else 0
        outcome = Outcome(
            png=png,
            kind="miss",
            style=job.style,
            width=width,
            height=height,
            threshold=threshold,
            latency_ms=(time.perf_counter() - job.started) * 1000,
            cached=cached,
        )
        return self._counted(outcome, job)


def _subject(source: Source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return UPLOAD_SUBJECT
    return f"The file {Path(source).name}"


def _none() -> None:
    return None


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header, without decoding the pixels."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size
