"""Opening an untrusted clip: its size, its kind, and an FFmpeg demuxer held to the limits.

Both the frame reader and the audio copy open the source here, so they refuse the same
files for the same reasons. The file is handed to FFmpeg as a Python file object with its
demuxer named, so no file name or URL is ever interpreted by FFmpeg's protocol layer, and
its probing, stream creation and frame sizes are capped inside FFmpeg itself.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import IO

import av
import av.codec.context
import av.container

from animegan.errors import VideoError
from animegan.video.limits import ANALYZE_SECONDS, OPEN_SECONDS, PROBE_BYTES, ClipLimits
from animegan.video.sniff import SNIFF_BYTES, ClipKind, sniff

ClipSource = str | Path | bytes

_UPLOAD = "The uploaded clip"
_DEMUXERS: dict[ClipKind, str] = {"mp4": "mov", "matroska": "matroska"}


def subject_of(src: ClipSource, named: str | None = None) -> str:
    """How messages name the clip: `named`, else by its file name (bytes: an upload)."""
    if named:
        return named
    return _UPLOAD if isinstance(src, (bytes, bytearray)) else f"The file {Path(src).name}"


def open_source(
    src: ClipSource, limits: ClipLimits, subject: str | None = None
) -> tuple[IO[bytes], int, ClipKind]:
    """The clip's bytes as a file object, its size, and its kind; refused if too large or not a clip."""
    subject = subject_of(src, subject)
    if isinstance(src, (bytes, bytearray)):
        size = len(src)
        _check_bytes(size, limits, subject)
        fileobj: IO[bytes] = io.BytesIO(src)
    else:
        path = Path(src)
        try:
            size = path.stat().st_size
            _check_bytes(size, limits, subject)
            fileobj = path.open("rb")
        except OSError as exc:
            why = (exc.strerror or str(exc)).lower()
            raise VideoError(f"Could not open the file {path.name}: {why}.", "not_video") from exc
    try:
        kind = sniff(fileobj.read(SNIFF_BYTES), subject)
        fileobj.seek(0)
    except BaseException:
        fileobj.close()
        raise
    return fileobj, size, kind


def open_container(
    fileobj: IO[bytes], kind: ClipKind, limits: ClipLimits, subject: str
) -> av.container.InputContainer:
    """FFmpeg's demuxer for ``kind`` on ``fileobj``, with probing and stream creation bounded."""
    container_options = {
        "probesize": str(PROBE_BYTES),
        "analyzeduration": str(int(ANALYZE_SECONDS * 1_000_000)),
        # One more than allowed, so a file over the limit is told apart from one at it.
        "max_streams": str(limits.max_streams + 1),
    }
    # PyAV's own timeout is never checked while FFmpeg reads a Python file object.
    budget = _OpenBudget(fileobj, OPEN_SECONDS)
    try:
        container = av.open(  # an InputContainer: mode "r"
            budget,
            format=_DEMUXERS[kind],
            container_options=container_options,
            # Probing decodes a frame; a decoder refuses to allocate more pixels than this.
            options={"max_pixels": str(limits.max_pixels)},
        )
    except av.error.MemoryError as exc:
        # FFmpeg's ISO demuxer fails with ENOMEM when a file has more streams than max_streams.
        raise too_many_streams(subject, limits) from exc
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if budget.expired:
            raise too_complex(subject) from exc
        if isinstance(exc, EOFError):  # the file ended inside its headers
            raise truncated(subject) from exc
        raise damaged(subject) from exc
    budget.stop()  # from here on, decoding costs are bounded by the frame limits
    assert isinstance(container, av.container.InputContainer)
    if budget.expired:
        container.close()
        raise too_complex(subject)
    if len(container.streams) > limits.max_streams:  # Matroska stops creating them silently
        container.close()
        raise too_many_streams(subject, limits)
    if not container.streams:
        container.close()
        raise damaged(subject)
    return container


class _OpenBudget:
    """The file as FFmpeg reads it while opening: once ``seconds`` have passed, it reads as ended."""

    def __init__(self, fileobj: IO[bytes], seconds: float) -> None:
        self._file = fileobj
        self._deadline: float | None = time.monotonic() + seconds
        self.expired = False

    def read(self, size: int = -1) -> bytes:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.expired = True
            return b""  # not an exception: PyAV would print the ones it drops
        return self._file.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def stop(self) -> None:
        self._deadline = None


def codec_name(context: av.codec.context.CodecContext | None) -> str:
    """The codec's own name ("mp3", "av1"), not its decoder's ("mp3float", "libdav1d")."""
    return context.codec.canonical_name if context is not None else "unknown"


def too_many_streams(subject: str, limits: ClipLimits) -> VideoError:
    return VideoError(
        f"{subject} has more than {limits.max_streams} streams (tracks), far more than a video "
        "needs; please export it again from a video app.",
        "too_many_streams",
    )


def too_complex(subject: str) -> VideoError:
    return VideoError(
        f"{subject} takes too long to read (it may be crafted to); please export it again as a plain MP4.",
        "too_complex",
    )


def truncated(subject: str) -> VideoError:
    return VideoError(
        f"{subject} is incomplete (truncated); it may have been cut off while uploading. "
        "Please upload it again.",
        "truncated",
    )


def damaged(subject: str) -> VideoError:
    return VideoError(
        f"{subject} is damaged or incomplete and cannot be read; it may have been cut off while "
        "uploading. Please upload it again or try another copy.",
        "damaged",
    )


def _check_bytes(size: int, limits: ClipLimits, subject: str) -> None:
    if size > limits.max_bytes:
        raise VideoError(
            f"{subject} is {_megabytes(size)}, more than the {_megabytes(limits.max_bytes)} allowed; "
            "please upload a shorter or smaller clip.",
            "too_large",
        )


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 10 << 20 else f"{size / 2**20:.1f} MB"
