"""The cached stylize service: `animegan` behind `cache_store`, shared by the app and the CLI."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .outcome import Outcome, format_duration
from .settings import Settings

if TYPE_CHECKING:  # both import heavy packages: the CLI's --help must stay light
    from cache_store import ResultCache

    from .clips import ClipService
    from .service import StylizeService

log = logging.getLogger(__name__)

__all__ = ["Outcome", "Settings", "build_clips", "build_service", "format_duration"]


def open_cache(settings: Settings) -> ResultCache | None:
    """The result cache the settings ask for, or None to run uncached.

    `cache_url` (a Redis server shared by replicas) wins over `cache_dir` (this host only);
    with Redis the byte budget is the server's own maxmemory, not `cache_size`.
    """
    if settings.no_cache:
        return None
    from cache_store import DEFAULT_THRESHOLD, ResultCache
    from cache_store.backends import SERVER_SCHEMES, is_server_url

    if settings.cache_url and not is_server_url(settings.cache_url):
        raise SystemExit(
            f"error: cache URL {settings.cache_url!r} must start with {', '.join(SERVER_SCHEMES)}"
        )
    return ResultCache(
        settings.cache_url or settings.cache_dir,
        size_limit=settings.cache_size,
        ttl=settings.ttl,
        threshold=DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold,
    )


def build_service(settings: Settings) -> StylizeService:
    """A `StylizeService` configured from `settings` (imports torch: call it once)."""
    from .service import StylizeService

    return StylizeService(
        open_cache(settings),
        weights_dir=settings.weights_dir,
        max_side=settings.max_side,
        precision=settings.precision,
        engine=settings.engine,
        inference_workers=settings.inference_workers,
        max_pending=settings.max_pending,
    )


#: A clip may have this many frames per second of its length, at most.
FRAMES_PER_SECOND_ALLOWED = 30


def build_clips(settings: Settings, service: StylizeService) -> ClipService | None:
    """The clip service on top of `service` (None when `video_seconds` is 0: no video)."""
    if settings.video_seconds <= 0:
        return None
    from animegan.video import ClipLimits

    from .clips import ClipService

    seconds = settings.video_seconds
    limits = ClipLimits(max_duration=seconds, max_frames=max(1, round(seconds * FRAMES_PER_SECOND_ALLOWED)))
    return ClipService(service, max_side=settings.video_side, limits=limits)
