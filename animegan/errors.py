"""Typed errors of the stylization engine.

Every error's ``str()`` is a complete sentence a user can act on, so the UI and the CLI
can show it as is instead of a traceback. Callers catch ``AnimeGANError`` to handle them
all at once, or a subclass to react to one cause.
"""

from __future__ import annotations

from typing import Literal

ImageErrorReason = Literal[
    "empty",
    "not_image",
    "truncated",
    "damaged",
    "too_large",
    "too_complex",
    "too_small",
    "bad_aspect",
    "unsupported",
]

VideoErrorReason = Literal[
    "empty",
    "not_video",
    "still_image",
    "unsupported",
    "no_video",
    "too_large",
    "too_small",
    "bad_aspect",
    "too_long",
    "too_many_frames",
    "frame_rate",
    "too_many_streams",
    "too_complex",
    "truncated",
    "damaged",
    "audio",
]


class AnimeGANError(Exception):
    """Base class; the message is meant for the end user."""


class _ReasonedError(AnimeGANError):
    """An error with a machine-readable ``reason`` beside its message."""

    reason: str

    def __reduce__(self) -> tuple[type[_ReasonedError], tuple[str, str]]:
        # Decoding runs in worker processes; the error must cross back with its reason.
        return type(self), (str(self), self.reason)


class ImageError(_ReasonedError):
    """The input is not a usable picture; ``reason`` says why in machine-readable form."""

    def __init__(self, message: str, reason: ImageErrorReason) -> None:
        super().__init__(message)
        self.reason: ImageErrorReason = reason


class VideoError(_ReasonedError):
    """The input is not a usable clip, or breaks a limit; ``reason`` says which."""

    def __init__(self, message: str, reason: VideoErrorReason) -> None:
        super().__init__(message)
        self.reason: VideoErrorReason = reason


class UnknownStyleError(AnimeGANError):
    """A style name that is not in the registry."""


class WeightsError(AnimeGANError):
    """Base class for problems with a model's weights file."""


class WeightsNotFoundError(WeightsError):
    """The weights file is not present and could not be downloaded."""


class WeightsCorruptError(WeightsError):
    """The weights file exists but is not a usable state dict for its style."""


class ChecksumMismatchError(WeightsCorruptError):
    """The file's SHA-256 differs from the one recorded for the style.

    A subclass of ``WeightsCorruptError`` because, to the user, a wrong file and a damaged
    file call for the same fix: fetch it again.
    """
