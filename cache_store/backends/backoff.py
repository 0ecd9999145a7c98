"""When to try a server again after it failed, without making requests wait for it.

A dead server costs each request at most one socket timeout: after a failure every call
fails at once (a clock comparison) until the retry time, then one caller tries for real.
Each failed try doubles the pause, up to a ceiling; one success resets it.
"""

from __future__ import annotations

import threading
import time

#: First pause after a failure, and the longest one.
FIRST_PAUSE_S = 0.25
LONGEST_PAUSE_S = 8.0


class Backoff:
    def __init__(self, first: float = FIRST_PAUSE_S, longest: float = LONGEST_PAUSE_S) -> None:
        self._first = first
        self._longest = longest
        self._lock = threading.Lock()
        self._pause = 0.0
        self._retry_at = 0.0
        self.reason: str | None = None  # why the last try failed; None while the server works

    def allow(self) -> bool:
        """True when a call may go to the server: it works, or this caller's turn to retry."""
        if self.reason is None:
            return True
        with self._lock:
            now = time.monotonic()
            if self.reason is None or now >= self._retry_at:
                self._retry_at = now + self._pause  # the others keep failing fast meanwhile
                return True
            return False

    def succeeded(self) -> None:
        if self.reason is not None:
            with self._lock:
                self.reason, self._pause = None, 0.0

    def failed(self, reason: str) -> None:
        with self._lock:
            self._pause = min(self._longest, max(self._first, 2 * self._pause))
            self._retry_at = time.monotonic() + self._pause
            self.reason = reason

    def seconds_to_retry(self) -> float:
        return max(0.0, self._retry_at - time.monotonic())
