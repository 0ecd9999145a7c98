"""Warming the cache with the examples: in process, with the real model and a real cache."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from cache_store import ResultCache
from stylize_service.service import StylizeService
from stylize_service.warmup import start_warming, warm_examples
from tests.support.app import EXAMPLES, TEST_MAX_SIDE


@pytest.fixture()
def cache(tmp_path):
    with ResultCache(tmp_path / "cache") as cache:
        yield cache


def new_service(cache, weights_dir) -> StylizeService:
    return StylizeService(cache, weights_dir=weights_dir, max_side=TEST_MAX_SIDE)


def test_examples_become_exact_hits_and_a_restart_finds_them(cache, weights_dir, tmp_path, caplog):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    caplog.set_level(logging.INFO, logger="stylize_service.warmup")

    first = warm_examples(new_service(cache, weights_dir), [broken, *EXAMPLES], "hayao", quiet_s=0)

    assert (first.generated, first.cached, first.failed) == (len(EXAMPLES), 0, 1)
    assert "broken.jpg (hayao) failed" in caplog.text  # logged, and the others went on
    assert f"warm-up finished: {len(EXAMPLES) + 1} examples for style hayao" in caplog.text
    # A restart (a new service on the same cache) finds them and runs no inference.
    restarted = new_service(cache, weights_dir)
    again = warm_examples(restarted, EXAMPLES, "hayao", quiet_s=0)
    assert (again.generated, again.cached, again.failed) == (0, len(EXAMPLES), 0)
    for example in EXAMPLES:
        assert restarted.stylize(example, "hayao").kind == "exact"


def test_the_warm_up_waits_until_users_leave_the_model(cache, weights_dir, unseen_photos, monkeypatch):
    service = new_service(cache, weights_dir)
    events: list[tuple[str, float]] = []
    real_finish = service.finish

    def finish(job, progress=None):
        events.append(("warm-up starts", time.monotonic()))
        return real_finish(job, progress)

    user_job = service.prepare(unseen_photos[0], "hayao")
    release = threading.Event()

    def user() -> None:  # a user's inference that lasts until the test releases it
        real_finish(user_job, progress=lambda done, _stage: release.wait(30) if done == 0 else None)
        events.append(("user done", time.monotonic()))

    user_thread = threading.Thread(target=user)
    user_thread.start()
    deadline = time.monotonic() + 30
    while service.pending == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    monkeypatch.setattr(service, "finish", finish)
    warming = start_warming(service, EXAMPLES[:1], "hayao")

    time.sleep(0.5)
    assert events == []  # the user holds the model: the warm-up has not queued behind them
    release.set()
    user_thread.join(30)
    warming.join(60)

    assert [name for name, _ in events] == ["user done", "warm-up starts"]
    assert events[1][1] - events[0][1] >= 0.9  # a quiet second after the user left
    assert service.stylize(EXAMPLES[0], "hayao").kind == "exact"


def test_without_a_cache_there_is_nothing_to_warm(weights_dir, monkeypatch, caplog):
    service = StylizeService(None, weights_dir=weights_dir, max_side=TEST_MAX_SIDE)
    monkeypatch.setattr(service, "prepare", lambda *a, **k: pytest.fail("no work without a cache"))
    caplog.set_level(logging.INFO, logger="stylize_service.warmup")
    report = warm_examples(service, EXAMPLES, "hayao")
    assert (report.generated, report.cached, report.failed) == (0, 0, 0)
    assert "skipped, the result cache is off" in caplog.text


def test_warming_starts_only_when_the_server_is_up(cache, weights_dir):
    service = new_service(cache, weights_dir)
    up = threading.Event()
    stop = threading.Event()
    warming = start_warming(service, EXAMPLES[:1], "hayao", ready=up.is_set, stop=stop)
    time.sleep(0.3)
    assert cache.stats().entries == 0 and warming.is_alive()
    up.set()
    warming.join(60)
    assert not warming.is_alive() and cache.stats().entries == 1
