"""Clips through the cache: every frame as a photo, and the whole clip by its content.

A clip is stylized frame by frame, and every frame goes through the same two tiers as a
photo, in the photo namespace of the clip's frame size: an identical frame (a still shot
decoded losslessly, or the same frame in another clip) is an exact hit, and a frame that
verifies as a near-duplicate of one stylized before reuses its result under the same
contract; only the rest run the model, in turns with everyone's photos. The finished clip
is cached too, keyed by the file's content: the same clip again answers from the cache in
one look-up, and identical clips sent at once are made once (single-flight).

The upload is decoded in a worker process (`animegan.isolated`, job `clip`), which streams
its frames one by one, and its sound is copied onto our frames in a worker too (job
`audio`): both read the untrusted file. Our own frames are encoded here (`Mp4Writer`, and
`GifWriter` for an animated GIF, which comes back as a GIF too). Memory stays at a frame or
two whatever the clip's length.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from PIL import Image

from animegan.engines import EngineFailure, Runner
from animegan.errors import AnimeGANError, VideoError, VideoErrorReason
from animegan.isolated import Budget, JobError, Upload, WorkerFailure, WorkerPool
from animegan.isolated.clip_jobs import frame_from, info_from
from animegan.video import ClipFrame, ClipInfo, ClipLimits, GifWriter, Mp4Writer
from cache_store import Fingerprint, Kind, Lookup
from cache_store.lookup import Meta

from .outcome import format_duration
from .progress import Progress
from .service import FIT_FILTER, LOCAL, Client, StylizeService, encode_png

log = logging.getLogger(__name__)

#: Frames are fitted to this longest side: a frame then costs about a tenth of a photo.
DEFAULT_FRAME_SIDE = 512
#: The formats a clip comes in (`animegan.formats.sniff`'s names).
CLIP_FORMATS = ("MP4", "MATROSKA", "GIF", "WEBP")
#: Workers that decode clips (each holds one clip at a time), and the address space each
#: may take: FFmpeg decoding 4K needs about 250 MB over its baseline, with threads' stacks.
CLIP_WORKERS = 1
CLIP_WORKER_MEMORY = 768 << 20
#: CPU a clip's decoding may take: a start, and per frame (decoding and fitting a 4K frame
#: takes about 45 ms), and the wall time to wait for each frame or the sound.
CLIP_CPU_S = 5.0
CLIP_CPU_PER_FRAME_S = 0.25
CLIP_WAIT_S = 60.0
#: Bumped whenever a change alters clip outputs (encoding settings, frame handling).
CLIP_FORMAT_VERSION = "clip1"
UPLOAD_SUBJECT = "The uploaded clip"
_VIDEO_REASONS = set(get_args(VideoErrorReason))
T = TypeVar("T")


@dataclass(frozen=True)
class ClipOutcome:
    """A finished clip: the MP4 (and GIF, for a GIF source) and how it was made."""

    mp4: bytes
    gif: bytes | None
    kind: Kind  # the whole clip: exact (cached), coalesced (made for an identical request), miss
    style: str
    frames: int
    counts: dict[str, int] = field(default_factory=dict)  # per kind of frame
    width: int = 0
    height: int = 0
    audio: bool = False
    latency_ms: float = 0.0
    cached: bool = True
    note: str = ""

    @property
    def model_runs(self) -> int:
        return self.counts.get("miss", 0)

    def badge(self) -> str:
        """'36 frames: 10 exact hits, 20 near-duplicate hits, 6 generated - 6 model runs - 3.21 s'."""
        took = format_duration(self.latency_ms)
        if self.kind == "exact":
            return f"whole clip from the cache: {_count(self.frames, 'frame')} - {took}"
        counts = [
            _count(self.counts.get("exact", 0), "exact hit"),
            _count(self.counts.get("fuzzy", 0), "near-duplicate hit"),
            f"{self.model_runs} generated",
        ]
        if self.counts.get("coalesced"):
            counts.append(f"{self.counts['coalesced']} waited for an identical request")
        head = "waited for an identical clip: " if self.kind == "coalesced" else ""
        runs = _count(self.model_runs, "model run")
        text = f"{head}{_count(self.frames, 'frame')}: {', '.join(counts)} - {runs} - {took}"
        if not self.cached:
            text += " (cache skipped)"
        return text + (f" ({self.note})" if self.note else "")

    def cache_info(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "frames": self.frames,
            "model_runs": self.model_runs,
            **{kind: self.counts.get(kind, 0) for kind in ("exact", "fuzzy", "coalesced", "miss")},
            "style": self.style,
            "width": self.width,
            "height": self.height,
            "audio": self.audio,
            "gif": self.gif is not None,
            "latency_ms": round(self.latency_ms, 2),
            "cached": self.cached,
        }


class ClipService:
    """Stylize clips with `photos`' models, cache and turns; frames fitted to `max_side`."""

    def __init__(
        self,
        photos: StylizeService,
        *,
        max_side: int = DEFAULT_FRAME_SIDE,
        limits: ClipLimits | None = None,
        workers: int = CLIP_WORKERS,
        memory: int = CLIP_WORKER_MEMORY,
    ) -> None:
        self.photos = photos
        self.max_side = max_side
        self.limits = limits or ClipLimits()
        self._workers, self._memory = workers, memory
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()

    def stylize(
        self,
        source: str | Path | bytes,
        style: str,
        *,
        use_cache: bool = True,
        scope: str | None = None,
        client: Client = LOCAL,
        started: float | None = None,
        progress: Progress | None = None,
        subject: str | None = None,
    ) -> ClipOutcome:
        """The stylized clip: from the cache if this very file was stylized before, else
        frame by frame. Raises `VideoError` (or `ImageError`) with a user-facing message."""
        started = time.perf_counter() if started is None else started
        named = subject or (UPLOAD_SUBJECT if isinstance(source, bytes) else f"The file {Path(source).name}")
        upload = Upload.read(source, limit=self.limits.max_bytes, subject=named)
        if upload.format not in CLIP_FORMATS:
            raise VideoError(
                f"{named} is not a clip we can read; please use an MP4, MOV or WebM video, or an "
                "animated GIF or WebP.",
                "not_video",
            )
        try:
            return self._stylize(upload, style, use_cache, scope, client, started, progress)
        except EngineFailure as exc:  # the faster engine switched itself off: once more on torch
            log.warning("%s; retrying the clip on the torch engine", exc)
            return self._stylize(upload, style, use_cache, scope, client, started, progress)

    def _stylize(
        self,
        upload: Upload,
        style: str,
        use_cache: bool,
        scope: str | None,
        client: Client,
        started: float,
        progress: Progress | None,
    ) -> ClipOutcome:
        runner = self.photos.stylizer(style)  # one engine for every frame of the clip
        frames_ns = self.photos.namespace(runner, scope, max_side=self.max_side)
        clip_ns = f"{frames_ns}|{CLIP_FORMAT_VERSION}"
        cache = self.photos.cache
        report = progress or _quiet
        cache_client = client.cache_client(scope)
        run = _Run(self, upload, runner, frames_ns, client, cache_client, use_cache, report)
        if cache is None:
            value, meta = run.compute()
            return _outcome(value, meta, "miss", style, started, cached=False)
        if not use_cache:
            value, meta = run.compute()
            cache.put(clip_ns, _clip_key(upload, meta), value, meta, client=cache_client)
            outcome = _outcome(value, meta, "miss", style, started, cached=False)
        else:
            hit = cache.lookup_raw(clip_ns, upload.sha256, client=cache_client)
            if hit is None:
                key = Fingerprint.of_key(upload.sha256, (1, 1))
                hit = cache.get_or_compute(clip_ns, key, run.compute, client=cache_client)
            kind: Kind = "miss" if hit.kind == "miss" else "coalesced" if hit.kind == "coalesced" else "exact"
            outcome = _outcome(hit.value, hit.meta, kind, style, started)
        cache.record(outcome.kind, outcome.latency_ms)  # one request, however many frames
        return outcome

    @property
    def pool(self) -> WorkerPool:
        """The workers that decode clips, started on first use."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = WorkerPool(
                    self._workers, self._memory, max_reply_bytes=64 << 20, name="clip", clips=True
                )
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


class _Run:
    """One clip's frames through the cache and the model, then encoded with its sound."""

    def __init__(
        self,
        clips: ClipService,
        upload: Upload,
        runner: Runner,
        namespace: str,
        client: Client,
        cache_client: str | None,
        use_cache: bool,
        progress: Progress,
    ) -> None:
        self.clips, self.photos = clips, clips.photos
        self.upload, self.runner, self.namespace = upload, runner, namespace
        self.client, self.cache_client = client, cache_client
        self.use_cache, self.progress = use_cache, progress
        self.counts: Counter[str] = Counter()

    def compute(self) -> tuple[bytes, Meta]:
        folder = Path(tempfile.mkdtemp(prefix="animegan-clip-"))
        try:
            return self._compute(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _compute(self, folder: Path) -> tuple[bytes, Meta]:
        upload, limits = self.upload, self.clips.limits
        args, payloads = upload.job_input()
        args = {**args, "max_side": self.clips.max_side, "limits": _limits_json(limits)}
        budget = Budget(CLIP_CPU_S + CLIP_CPU_PER_FRAME_S * limits.max_frames, CLIP_WAIT_S)
        self.progress(0.0, "Decoding")
        silent, gif_path = folder / "silent.mp4", folder / "clip.gif"
        info: ClipInfo | None = None
        frames, size = 0, (0, 0)
        # the writers finish on success and are abandoned on any error (which then shows as
        # itself, e.g. an EngineFailure on the first frame, retried on torch by `stylize`)
        with (
            self.photos.decode_slots.slot(self.client.key),
            _failures(upload),
            self.clips.pool.stream("clip", args, payloads, budget) as replies,
            contextlib.ExitStack() as writers,
        ):
            mp4: Mp4Writer | None = None
            gif: GifWriter | None = None
            for reply in replies:
                if info is None:
                    info = _parsed(upload, partial(info_from, reply.header))
                    mp4 = writers.enter_context(Mp4Writer(silent, frame_rate=info.frame_rate))
                    if info.kind == "gif":
                        gif = writers.enter_context(GifWriter(gif_path, loop=info.loop))
                    continue
                frame = _parsed(upload, partial(frame_from, reply.header, reply.payloads))
                self._report(frame.index, info)
                out = ClipFrame(self._stylized(frame.image), frame.index, frame.time, frame.duration)
                for writer in (mp4, gif):
                    if writer is not None:
                        writer.write(out)
                frames, size = frames + 1, out.image.size
            if info is None or frames == 0:
                raise VideoError(f"{upload.subject} has no frames to stylize.", "no_video")
        self.progress(1.0, "Adding the sound" if info.audio else "Encoding")
        final, audio, note = self._with_sound(silent, folder / "final.mp4", info)
        mp4_bytes = final.read_bytes()
        gif_bytes = gif_path.read_bytes() if info.kind == "gif" else b""
        width, height = size
        meta: Meta = {
            "frames": frames,
            "counts": dict(self.counts),
            "width": width,
            "height": height,
            "audio": audio,
            "note": note,
            "mp4_bytes": len(mp4_bytes),
            "gif_bytes": len(gif_bytes),
        }
        return mp4_bytes + gif_bytes, meta

    def _stylized(self, frame: Image.Image) -> Image.Image:
        """`frame` stylized through the cache's two tiers (or the model, once)."""
        cache = self.photos.cache
        if cache is None:
            self.counts["miss"] += 1
            return self.photos.run_model(self.runner, frame, self.client)
        fingerprint = Fingerprint.of(frame)  # the frame is the model's view: exact keys too
        if self.use_cache:
            hit = cache.lookup(
                self.namespace, fingerprint, min_source_side=_min_side(frame), client=self.cache_client
            )
            if hit is not None:
                self.counts[hit.kind] += 1
                return _fitted(hit, frame.size)
        calibration = None

        def compute() -> tuple[bytes, Meta]:
            nonlocal calibration
            calibration = self.photos.calibrator.start(fingerprint, lambda: frame)
            output = self.photos.run_model(self.runner, frame, self.client)
            return encode_png(output), {"width": output.width, "height": output.height}

        def stored() -> Fingerprint:
            return self.photos.calibrator.result(calibration, fingerprint)

        if not self.use_cache:
            png, meta = compute()
            cache.put(self.namespace, stored(), png, meta, client=self.cache_client)
            self.counts["miss"] += 1
            return Image.open(io.BytesIO(png)).convert("RGB")
        result = cache.get_or_compute(
            self.namespace,
            fingerprint,
            compute,
            stored=stored,
            min_source_side=_min_side(frame),
            client=self.cache_client,
        )
        self.counts[result.kind] += 1
        return _fitted(result, frame.size)

    def _with_sound(self, silent: Path, final: Path, info: ClipInfo) -> tuple[Path, bool, str]:
        """The MP4 with the source's sound (copied or transcoded in a worker), or silent with
        a note when the sound cannot be kept."""
        if not info.audio:
            return silent, False, ""
        args, payloads = self.upload.job_input()
        if payloads:  # the worker reads the source from a file
            source = final.with_name("source")
            source.write_bytes(payloads[0])
            args = {**args, "path": str(source)}
        args = {
            **args,
            "video": str(silent),
            "source": args["path"],
            "out": str(final),
            "start": [info.start.numerator, info.start.denominator],
            "limits": _limits_json(self.clips.limits),
        }
        try:
            with _failures(self.upload):
                reply = self.clips.pool.call("audio", args, [], Budget(CLIP_CPU_S * 4, CLIP_WAIT_S))
        except VideoError as exc:
            log.info("%s: sound dropped: %s", self.upload.sha256[:12], exc)
            return silent, False, "its sound could not be kept"
        return final, bool(reply.header.get("audio")), ""

    def _report(self, index: int, info: ClipInfo) -> None:
        total = info.frames
        if total:
            self.progress(min(index / total, 0.99), f"Frame {index + 1} of {total}")
        else:
            self.progress(0.0, f"Frame {index + 1}")


@contextlib.contextmanager
def _failures(upload: Upload) -> Iterator[None]:
    """Worker failures and the errors a job reported, as the typed errors a user reads."""
    try:
        yield
    except JobError as error:
        raise _job_error(upload, error.header) from None
    except WorkerFailure as failure:
        log.info("%s: clip job stopped (%s)", upload.sha256[:12], failure)
        if failure.why == "memory":
            raise VideoError(
                f"{upload.subject} needs more memory to decode than this server allows; "
                "please use a smaller video.",
                "too_complex",
            ) from None
        if failure.why in ("cpu", "deadline"):
            raise VideoError(
                f"{upload.subject} takes too long to decode (it may be crafted to); please save it "
                "again as a plain MP4.",
                "too_complex",
            ) from None
        raise _damaged(upload) from None


def _parsed(upload: Upload, parse: Callable[[], T]) -> T:
    """A worker's reply read back; a malformed one (the worker is not trusted) is damage."""
    try:
        return parse()
    except (ValueError, KeyError, TypeError) as error:
        log.warning("%s: a clip worker sent a malformed reply: %s", upload.sha256[:12], error)
        raise _damaged(upload) from None


def _damaged(upload: Upload) -> VideoError:
    return VideoError(f"{upload.subject} is damaged and cannot be decoded.", "damaged")


def _job_error(upload: Upload, header: dict[str, Any]) -> AnimeGANError:
    """The typed error a worker reported (its message bounded: it came from a worker)."""
    reason, message = header.get("reason"), header.get("message")
    if header.get("error") == "VideoError" and reason in _VIDEO_REASONS and isinstance(message, str):
        return VideoError(message[:400], cast(VideoErrorReason, reason))
    if header.get("error") == "ImageError" and isinstance(message, str):
        return VideoError(message[:400], "damaged")
    log.warning("%s: unexpected clip decoding error: %s", upload.sha256[:12], str(message)[:200])
    return _damaged(upload)


def _fitted(result: Lookup, size: tuple[int, int]) -> Image.Image:
    output = Image.open(io.BytesIO(result.value)).convert("RGB")
    return output if output.size == size else output.resize(size, FIT_FILTER)


def _min_side(frame: Image.Image) -> int:
    return max(frame.size) * 9 // 10


def _clip_key(upload: Upload, meta: Meta) -> Fingerprint:
    return Fingerprint.of_key(upload.sha256, (int(meta.get("width") or 1), int(meta.get("height") or 1)))


def _outcome(
    value: bytes, meta: Meta, kind: Kind, style: str, started: float, *, cached: bool = True
) -> ClipOutcome:
    """The clip `value` holds, as this request got it: made now (the frames' kinds), or
    whole from the cache or from an identical request (every frame, with no model run)."""
    split = int(meta.get("mp4_bytes", len(value)))
    gif = value[split:] if meta.get("gif_bytes") else None
    frames = int(meta.get("frames", 0))
    counts = {str(k): int(v) for k, v in dict(meta.get("counts") or {}).items()}
    if kind != "miss":
        counts = {kind: frames}
    return ClipOutcome(
        mp4=value[:split],
        gif=gif,
        kind=kind,
        style=style,
        frames=frames,
        counts=counts,
        width=int(meta.get("width", 0)),
        height=int(meta.get("height", 0)),
        audio=bool(meta.get("audio")),
        latency_ms=(time.perf_counter() - started) * 1000,
        cached=cached,
        note=str(meta.get("note") or ""),
    )


def _limits_json(limits: ClipLimits) -> dict[str, Any]:
    return asdict(limits)


def _quiet(_fraction: float, _stage: str) -> None:
    return None


def _count(n: int, noun: str) -> str:
    """'1 exact hit', '2 exact hits'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
