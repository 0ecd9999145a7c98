"""Decoding uploads in worker processes: the server's side of `animegan.isolated`.

`Upload.read` is all the server does with an untrusted file itself: it checks the size,
names the format from the magic bytes (refusing what is not a photo before any parser
runs) and hashes the bytes, streaming a file from disk so that no upload is held in the
server's memory. `IsolatedDecoder` then has workers decode it: `preview` (the reduced
decode that fingerprinting needs) and `photo` (what the model sees), each under a CPU-time
budget that grows with the file, a deadline, and the workers' memory cap. A worker that
breaks a limit is killed and replaced, and the caller gets the `ImageError` a user reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from PIL import Image

from animegan.errors import AnimeGANError, ImageError, ImageErrorReason
from animegan.formats import HEAD_BYTES, sniff
from animegan.intake import Photo, Preview
from animegan.isolated import jobs
from animegan.isolated.pool import Budget, JobError, WorkerFailure, WorkerPool
from animegan.isolated.wire import Reply
from animegan.safe_decode import broken, decode_budget, too_complex, too_much_memory

log = logging.getLogger(__name__)

#: Decoding workers kept warm.
DEFAULT_WORKERS = 2
#: Address space each worker may take beyond what it needs idle: the largest decode
#: (a 50 MP photo's pixels, the file itself and a conversion strip) fits, a decoder that
#: asks for more gets a MemoryError. With `DEFAULT_WORKERS`, decoding never takes more
#: than about 512 MB of the machine, however many uploads arrive.
DEFAULT_WORKER_MEMORY = 256 << 20
#: CPU seconds a job may use beyond the in-worker decode budget (`safe_decode`, which
#: stops most costly files itself with a precise message): starting up, copying pixels.
JOB_OVERHEAD_CPU_S = 0.3
#: Wall seconds a job may take, however busy the machine: a last resort, since a stuck
#: decoder burns CPU and the CPU budget stops it first.
JOB_DEADLINE_S = 30.0
#: Largest reply accepted from a worker: a 50 MP picture with alpha, plus headroom.
MAX_REPLY_BYTES = 256 << 20
#: Hash files in blocks of this size.
_HASH_BLOCK = 1 << 20

_REASONS = set(get_args(ImageErrorReason))
T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """An untrusted file, read only as far as naming and hashing it: by `path` (never held
    in memory) or as `data`. `subject` is how messages name it."""

    sha256: str
    size: int
    format: str | None
    subject: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def read(cls, source: str | os.PathLike[str] | bytes, *, limit: int, subject: str) -> Upload:
        """Size-check, sniff and hash `source` (a path or the bytes); raises `ImageError`
        for an empty, unreadable or oversized file."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            _check_size(len(data), limit, subject)
            return cls(
                hashlib.sha256(data).hexdigest(), len(data), sniff(data[:HEAD_BYTES]), subject, data=data
            )
        path = Path(source)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                _check_size(size, limit, subject)
                head = handle.read(HEAD_BYTES)
                digest.update(head)
                while block := handle.read(_HASH_BLOCK):
                    digest.update(block)
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            raise ImageError(f"Could not open the file {path.name}: {why}.", "not_image") from exc
        return cls(digest.hexdigest(), size, sniff(head), subject, path=path)

    def job_input(self) -> tuple[dict[str, Any], list[bytes]]:
        """How a worker gets the file: its path, or its bytes."""
        if self.data is not None:
            return {"subject": self.subject}, [self.data]
        return {"subject": self.subject, "path": str(self.path), "max_bytes": self.size}, []


class IsolatedDecoder:
    """Decodes `Upload`s in a `WorkerPool` of `workers` processes of `memory` bytes each."""

    def __init__(self, workers: int = DEFAULT_WORKERS, memory: int = DEFAULT_WORKER_MEMORY) -> None:
        self.pool = WorkerPool(workers, memory, max_reply_bytes=MAX_REPLY_BYTES)

    def preview(self, upload: Upload, *, min_side: int) -> Preview:
        """The reduced decode of `upload` (see `animegan.intake.open_preview`)."""
        args, payloads = upload.job_input()
        reply = self._call(upload, "preview", {**args, "min_side": min_side}, payloads)
        return self._parsed(upload, lambda: jobs.preview_from(reply.header, reply.payloads))

    def photo(
        self, upload: Upload, *, max_side: int | None, also_side: int | None = None
    ) -> tuple[Photo, Image.Image | None]:
        """`upload` decoded as the model sees it (see `open_image`), and, with `also_side`,
        also fitted to that side (RGB, or RGBA with alpha)."""
        args, payloads = upload.job_input()
        reply = self._call(upload, "photo", {**args, "max_side": max_side, "also_side": also_side}, payloads)
        return self._parsed(upload, lambda: jobs.photo_from(reply.header, reply.payloads))

    def close(self) -> None:
        self.pool.close()

    def _call(self, upload: Upload, job: str, args: dict[str, Any], payloads: list[bytes]) -> Reply:
        budget = Budget(cpu_s=decode_budget(upload.size) + JOB_OVERHEAD_CPU_S, wall_s=JOB_DEADLINE_S)
        try:
            reply = self.pool.call(job, args, payloads, budget)
        except JobError as exc:
            raise _job_error(upload, exc.header) from None
        except WorkerFailure as failure:
            log.info("%s: %s job stopped (%s)", upload.sha256[:12], job, failure)
            raise _failure_error(upload, failure.why) from None
        return reply

    @staticmethod
    def _parsed(upload: Upload, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except (ValueError, IndexError, TypeError) as exc:
            log.warning("%s: a decoding worker sent a malformed reply: %s", upload.sha256[:12], exc)
            raise _failure_error(upload, "protocol") from None


def _check_size(size: int, limit: int, subject: str) -> None:
    if size == 0:
        raise ImageError(f"{subject} is empty (0 bytes); please choose a photo and try again.", "empty")
    if size > limit:
        raise ImageError(
            f"{subject} is {size / 2**20:.1f} MB, more than the {limit >> 20} MB allowed; "
            "please use a smaller file.",
            "too_large",
        )


def _job_error(upload: Upload, header: dict[str, Any]) -> AnimeGANError:
    """The typed error a worker reported, with its message (bounded: it came from a worker)."""
    reason, message = header.get("reason"), header.get("message")
    if header.get("error") == "ImageError" and reason in _REASONS and isinstance(message, str):
        return ImageError(message[:400], cast(ImageErrorReason, reason))
    if header.get("error") == "unexpected":
        log.warning("%s: unexpected decoding error: %s", upload.sha256[:12], str(message)[:200])
    return _failure_error(upload, "crash")


def _failure_error(upload: Upload, why: str) -> ImageError:
    subject = upload.subject
    if why in ("cpu", "deadline"):
        return too_complex(subject)
    if why == "memory":
        return too_much_memory(subject)
    return broken(subject)
