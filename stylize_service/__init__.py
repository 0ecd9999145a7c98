"""The cached stylize service: `animegan` behind `cache_store`, shared by the app and the CLI."""

from __future__ import annotations

import logging

from .outcome import Outcome, format_duration
from .settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Outcome", "Settings", "build_service", "format_duration"]


def open_cache(settings: Settings):
    """The result cache the settings ask for, or None to run uncached."""
    if settings.no_cache:
        return None
    from cache_store import ResultCache

    kwargs = {"size_limit": settings.cache_size, "ttl": settings.ttl}
    if settings.threshold is not None:
        kwargs["threshold"] = settings.threshold
    return ResultCache(settings.cache_dir, **kwargs)


def build_service(settings: Settings):
    """A `StylizeService` configured from `settings` (imports torch: call it once)."""
    from .service import StylizeService

    return StylizeService(
        open_cache(settings),
        weights_dir=settings.weights_dir,
        max_side=settings.max_side,
        precision=settings.precision,
        inference_workers=settings.inference_workers,
        max_pending=settings.max_pending,
    )
