"""Sharing the decoders and the model fairly between visitors.

First come, first served lets one client that sends 26 uploads at once hold every later
visitor behind all 26. Here each kind of scarce work (decoding, the model) has a number of
slots, and when callers wait for one, clients take turns: the next slot goes to the client
who waited longest for its turn, whatever it queued behind it, so a visitor with one photo
waits for at most one job of each other client ahead of it. `InFlight` caps how many
requests one client may have in progress at all, so nobody can fill the queue.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

#: How often a waiting caller is told how many are still ahead of it, in seconds.
REPORT_EVERY_S = 0.25


class FairSlots:
    """At most `capacity` holders at once; waiting callers are admitted client by client in
    turn (round robin), each client's own callers in order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._free = capacity
        self._cond = threading.Condition()
        self._queues: OrderedDict[str, deque[object]] = OrderedDict()  # clients in turn order

    @contextmanager
    def slot(self, client: str, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Hold a slot for `client`; while waiting, `on_wait(ahead)` is called now and then
        with how many callers will be admitted first."""
        ticket = object()
        with self._cond:
            self._queues.setdefault(client, deque()).append(ticket)
            while not (self._free > 0 and self._next() is ticket):
                if on_wait is not None:
                    on_wait(self._ahead(client, ticket))
                self._cond.wait(REPORT_EVERY_S)
            self._admit(client)
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return sum(len(queue) for queue in self._queues.values())

    @property
    def busy(self) -> int:
        return self.capacity - self._free

    def _next(self) -> object | None:
        for queue in self._queues.values():
            return queue[0]
        return None

    def _admit(self, client: str) -> None:
        """Take the slot: the client's first ticket leaves, the client goes to the back."""
        queue = self._queues.pop(client)
        queue.popleft()
        if queue:
            self._queues[client] = queue
        self._free -= 1
        self._cond.notify_all()

    def _ahead(self, client: str, ticket: object) -> int:
        """Callers admitted before `ticket` if nobody else arrives: in each round every
        client with tickets left takes one."""
        queues = list(self._queues.items())
        mine = next(index for index, (name, _) in enumerate(queues) if name == client)
        rounds = list(self._queues[client]).index(ticket)
        ahead = rounds
        for index, (_, queue) in enumerate(queues):
            if index != mine:
                ahead += min(len(queue), rounds + (1 if index < mine else 0))
        return ahead + self.busy


class ClientBusyError(Exception):
    """A client already has as many requests in progress as it may."""


class InFlight:
    """Counts requests in progress per key (a session, an address) against a cap per kind
    of key, so one client can hold only so much of the server's queue."""

    def __init__(self, caps: dict[str, int]) -> None:
        self.caps = caps
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, keys: Iterable[tuple[str, str]]) -> Iterator[None]:
        """Count one request for each (kind, key); raises `ClientBusyError` naming the kind
        whose cap it would exceed. A key of None is not counted."""
        taken = [(kind, key) for kind, key in keys if key and kind in self.caps]
        with self._lock:
            for kind, key in taken:
                if self._counts[(kind, key)] >= self.caps[kind]:
                    raise ClientBusyError(kind)
            for item in taken:
                self._counts[item] += 1
        try:
            yield
        finally:
            with self._lock:
                for item in taken:
                    self._counts[item] -= 1
                    if not self._counts[item]:
                        del self._counts[item]
