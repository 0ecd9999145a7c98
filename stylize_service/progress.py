"""Progress a person can trust while the model runs.

The model reports real fractions only when it works in tiles or frames; one untiled pass
is a single call that says nothing until it returns. So while it runs, a ticker reports
the time spent against the time such a pass took on this server lately (per megapixel,
smoothed), capped short of the end until the pass really ends; a tiled run's own fractions
win whenever they are further along. Before anything was measured, the bar says
"Stylizing" at 0 until done rather than invent a speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: progress(fraction 0..1, what is happening now)
Progress = Callable[[float, str], None]

#: How often the ticker reports, in seconds.
TICK_S = 0.1
#: The estimate never claims more than this before the pass has ended.
CAP = 0.95
#: Weight of the newest measurement in the smoothed speed.
SMOOTHING = 0.3
STAGE = "Stylizing"


class SpeedEstimate:
    """Seconds per megapixel of recent model passes, smoothed; thread-safe."""

    def __init__(self) -> None:
        self._s_per_mpx: float | None = None
        self._lock = threading.Lock()

    def expected(self, pixels: int) -> float | None:
        with self._lock:
            return None if self._s_per_mpx is None else self._s_per_mpx * pixels / 1e6

    def add(self, pixels: int, seconds: float) -> None:
        rate = seconds / max(pixels / 1e6, 1e-6)
        with self._lock:
            old = self._s_per_mpx
            self._s_per_mpx = rate if old is None else (1 - SMOOTHING) * old + SMOOTHING * rate


_speeds: dict[str, SpeedEstimate] = {}
_speeds_lock = threading.Lock()


def speed_of(model: str) -> SpeedEstimate:
    with _speeds_lock:
        return _speeds.setdefault(model, SpeedEstimate())


@contextmanager
def model_progress(
    progress: Progress | None, size: tuple[int, int], model: str = "model"
) -> Iterator[Callable[[float], None]]:
    """Report a pass of `model` over a picture of `size` to `progress`; yields the callback
    for the model's own fractions. The pass's time updates the speed estimate."""
    pixels = size[0] * size[1]
    speed = speed_of(model)
    started = time.perf_counter()
    if progress is None:
        yield _ignore
        speed.add(pixels, time.perf_counter() - started)
        return
    expected = speed.expected(pixels)
    reported = [0.0]
    lock = threading.Lock()

    def report(fraction: float) -> None:
        with lock:
            reported[0] = max(reported[0], min(fraction, 1.0))
            value = reported[0]
        progress(value, STAGE)

    done = threading.Event()

    def tick() -> None:
        while not done.wait(TICK_S):
            if expected:
                estimate = min(CAP, (time.perf_counter() - started) / expected)
                if estimate > reported[0]:
                    report(estimate)

    report(0.0)
    ticker = threading.Thread(target=tick, name="progress", daemon=True)
    ticker.start()
    try:
        yield report
    finally:
        done.set()
        ticker.join()
    speed.add(pixels, time.perf_counter() - started)
    report(1.0)


def _ignore(_: float) -> None:
    return None
