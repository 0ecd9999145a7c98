"""Calibrating a new cache entry while the model computes its result.

A stored result becomes a near-duplicate target only with tolerances measured on its
picture (`Fingerprint.calibrated`: a few re-encodes and resizes, about a tenth of a
second). The picture is known before the model runs, so the calibration runs beside the
inference instead of after it, and the entry is stored once, calibrated, as soon as both
are done. A calibration that fails leaves the entry exact-only: a lost hit, never a wrong
answer or a failed request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from cache_store import Fingerprint

log = logging.getLogger(__name__)


class Calibrator:
    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="calibrate")

    def start(self, fingerprint: Fingerprint, picture: Callable[[], Image.Image]) -> Future[Fingerprint]:
        """Begin `fingerprint.calibrated(picture())`."""
        return self._pool.submit(lambda: fingerprint.calibrated(picture()))

    @staticmethod
    def result(calibration: Future[Fingerprint] | None, fingerprint: Fingerprint) -> Fingerprint:
        """The calibrated fingerprint, or `fingerprint` itself if calibrating failed."""
        if calibration is None:
            return fingerprint
        try:
            return calibration.result()
        except Exception:
            log.exception("could not calibrate a cache entry; it is stored for exact hits only")
            return fingerprint

    def close(self) -> None:
        self._pool.shutdown(wait=True)
