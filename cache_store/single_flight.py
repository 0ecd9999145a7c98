"""A per-key lease shared by threads and processes, for running a computation once.

The lease lives in the store with an expiry that a heartbeat thread pushes forward while
the computation runs; a holder that dies (kill -9, crash) stops the heartbeat, so others
wait at most `ttl` seconds before taking over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator

from .store import Store

log = logging.getLogger(__name__)

#: Waiters poll the store: fast at first (a concurrent exact hit is ready in milliseconds),
#: then no more than 20 times a second.
POLL_START_S = 0.002
POLL_MAX_S = 0.05


class KeyLease:
    def __init__(self, store: Store, key: str, ttl: float) -> None:
        self._store = store
        self.key = key
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def try_acquire(self) -> bool:
        return self._store.try_lock(self.key, self.owner, self.ttl)

    def __enter__(self) -> KeyLease:
        """Keep the (acquired) lease alive until exit."""
        self._heartbeat = threading.Thread(target=self._beat, name="cache-lease-heartbeat", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        try:
            self._store.unlock(self.key, self.owner)
        except Exception as error:  # it expires on its own
            log.warning("could not release cache lease %s: %s", self.key, error)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._store.refresh_lock(self.key, self.owner, self.ttl)
            except Exception as error:  # a busy store; the next beat retries
                log.debug("cache lease heartbeat failed: %s", error)


def poll_delays() -> Iterator[float]:
    delay = POLL_START_S
    while True:
        yield delay
        delay = min(2 * delay, POLL_MAX_S)
