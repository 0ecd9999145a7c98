"""Visitors share the decoders and the model in turns, and one visitor can hold only so much."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from stylize_service.fairness import ClientBusyError, FairSlots, InFlight


def queue_up(slots: FairSlots, arrivals: list[str]) -> list[str]:
    """Hold the only slot, let `arrivals` queue in order, release: the order they ran in."""
    ran: list[str] = []
    release = threading.Event()
    lock = threading.Lock()

    def holder() -> None:
        with slots.slot("holder"):
            release.wait(10)

    def caller(client: str) -> None:
        with slots.slot(client), lock:
            ran.append(client)

    first = threading.Thread(target=holder)
    first.start()
    while slots.busy == 0:
        time.sleep(0.001)
    threads = []
    for client in arrivals:
        thread = threading.Thread(target=caller, args=(client,))
        thread.start()
        threads.append(thread)
        while slots.waiting < len(threads):  # queued in this order
            time.sleep(0.001)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    return ran


def test_clients_take_turns_whoever_queued_more():
    ran = queue_up(FairSlots(1), ["flood"] * 6 + ["alice", "bob", "alice"])
    # alice and bob arrived behind six of flood's requests and wait for one each, not six
    assert ran[:3] == ["flood", "alice", "bob"]
    assert ran.index("alice", 2) < 5 and ran.count("flood") == 6


def test_a_waiting_caller_is_told_how_many_are_ahead():
    slots = FairSlots(1)
    heard: list[int] = []
    release = threading.Event()

    def holder() -> None:
        with slots.slot("a"):
            release.wait(10)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    while slots.busy == 0:
        time.sleep(0.001)
    for _ in range(2):
        threads.append(threading.Thread(target=holder))  # two more of a's
        threads[-1].start()
    while slots.waiting < 2:
        time.sleep(0.001)

    def listener() -> None:
        with slots.slot("b", on_wait=heard.append):
            pass

    threads.append(threading.Thread(target=listener))
    threads[-1].start()
    time.sleep(0.3)
    release.set()
    for thread in threads:
        thread.join(10)
    assert heard and heard[0] == 2  # the running one, and one of a's queued (then b's turn)


def test_in_flight_caps_per_session_and_per_address():
    limits = InFlight({"session": 2, "address": 3})

    def request(session: str, address: str):
        return limits.hold([("session", session), ("address", address)])

    with contextlib.ExitStack() as held:
        held.enter_context(request("s1", "10.0.0.1"))
        held.enter_context(request("s1", "10.0.0.1"))
        with pytest.raises(ClientBusyError) as full:
            held.enter_context(request("s1", "10.0.0.1"))
        assert str(full.value) == "session"
        held.enter_context(request("s2", "10.0.0.1"))  # another tab has a cap of its own ...
        with pytest.raises(ClientBusyError) as crowded:
            held.enter_context(request("s3", "10.0.0.1"))  # ... but the address is full now
        assert str(crowded.value) == "address"
        held.enter_context(request("s4", "10.0.0.2"))  # someone else gets in
    with request("s1", "10.0.0.1"):  # all released
        pass
