"""Warming the result cache with the example photos, so the first visitor's click is a hit.

Gradio's ``cache_examples`` runs the examples at start and keeps the outputs in a folder of
its own; here they go where every request looks, the result cache, through the service's
normal two steps (``prepare``, then ``finish`` for a miss), so the keys are exactly those
of a request: clicking an example is an exact hit even for the first visitor, and a
restart (or another replica on a shared cache) finds them cached and does no work.

It never costs a user anything but, at worst, one example's inference: it runs in one
daemon thread that starts only once the server is up (``ready``), and before each
inference it waits until no user request has waited for or run on the model
(``service.pending == 0``) for a quiet moment, so it takes the inference slot only when
nobody wants it. A user who arrives during an example's inference waits for that one
(about a second at the default size). Progress and the summary are logged; a failure is
logged and skipped, never raised.

It first waits for the style's engine to settle (``StyleEngine.wait_ready``: a faster
engine read from disk, or built on a machine's first start), so the examples are stored
under the namespace of the engine that will serve them, not the torch one it replaces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from animegan.errors import AnimeGANError

from .outcome import format_duration
from .service import Job, StylizeService

log = logging.getLogger(__name__)

#: How long the model must have been idle before an example may take it, in seconds.
QUIET_S = 1.0
_POLL_S = 0.05
_ENGINE_POLL_S = 0.5


@dataclass
class WarmReport:
    """How many examples were stylized now, found cached, or failed."""

    generated: int = 0
    cached: int = 0
    failed: int = 0


def warm_examples(
    service: StylizeService,
    paths: Sequence[Path],
    style: str,
    *,
    quiet_s: float = QUIET_S,
    stop: threading.Event | None = None,
) -> WarmReport:
    """Put ``style``'s output for each of ``paths`` into the cache, yielding to users."""
    report = WarmReport()
    if service.cache is None:
        log.info("warm-up: skipped, the result cache is off")
        return report
    started = time.perf_counter()
    for path in paths:
        if stop is not None and stop.is_set():
            break
        try:
            result = service.prepare(path, style, warm_up=True)  # pinned, and not counted
            if isinstance(result, Job):
                if not _wait_until_idle(service, quiet_s, stop):
                    break
                outcome = service.finish(result)
                report.generated += 1
            else:
                outcome = result
                report.cached += 1
            log.info("warm-up: %s (%s) %s", path.name, style, outcome.badge())
        except AnimeGANError as exc:  # a bad example file, say: the message says it all
            report.failed += 1
            log.warning("warm-up: %s (%s) failed: %s", path.name, style, exc)
        except Exception:
            report.failed += 1
            log.exception("warm-up: %s (%s) failed", path.name, style)
    log.info(
        "warm-up finished: %d examples for style %s in %s (%d generated, %d already cached, %d failed)",
        len(paths),
        style,
        format_duration((time.perf_counter() - started) * 1000),
        report.generated,
        report.cached,
        report.failed,
    )
    return report


def start_warming(
    service: StylizeService,
    paths: Sequence[Path],
    style: str,
    *,
    ready: Callable[[], bool] = lambda: True,
    stop: threading.Event | None = None,
) -> threading.Thread:
    """Run ``warm_examples`` in a daemon thread once ``ready()`` is true (the server is up)."""

    def run() -> None:
        while not ready():
            if stop is not None and stop.is_set():
                return
            time.sleep(_POLL_S)
        if not _wait_for_engine(service, style, stop):
            return
        warm_examples(service, paths, style, stop=stop)

    thread = threading.Thread(target=run, name="warm-examples", daemon=True)
    thread.start()
    return thread


def _wait_for_engine(service: StylizeService, style: str, stop: threading.Event | None) -> bool:
    """Wait until ``style``'s engine has settled (either way); False if stopped first."""
    try:
        engine = service.engine(style)
    except AnimeGANError:
        return True  # warm_examples logs the cause for each example
    while not engine.wait_ready(_ENGINE_POLL_S):
        if stop is not None and stop.is_set():
            return False
    return True


def _wait_until_idle(service: StylizeService, quiet_s: float, stop: threading.Event | None) -> bool:
    """True once no request has waited for or run on the model for ``quiet_s``; False if stopped."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        if stop is not None and stop.is_set():
            return False
        if service.pending:
            quiet_since = time.monotonic()
        time.sleep(_POLL_S)
    return True
