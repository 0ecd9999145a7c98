"""Two app processes (replicas) sharing one Redis, as behind a load balancer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.support.app import launch_app, reencode, stop
from tests.support.redis_server import RedisServer, running_server

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture(scope="module")
def redis_for_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from running_server(tmp_path_factory.mktemp("redis-apps"))


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory, weights_dir, redis_for_apps: RedisServer
) -> Iterator[list[tuple[Client, Path]]]:
    """Two apps on one Redis, started side by side (each loads the model)."""
    tmp = tmp_path_factory.mktemp("replicas")
    url = redis_for_apps.url()
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda _: launch_app(tmp, weights_dir, "--cache-url", url), range(2)))
    try:
        yield [(Client(app_url, verbose=False), log) for _, app_url, log in started]
    finally:
        for proc, _, _ in started:
            stop(proc)


def kind(client: Client, path: Path) -> str:
    _, _, info = client.predict(handle_file(str(path)), "hayao", api_name="/stylize")
    return info["kind"]


def test_a_photo_stylized_on_one_replica_hits_on_the_other(replicas, unseen_photos, tmp_path) -> None:
    (first, _), (second, _) = replicas
    photo = unseen_photos[3]
    copy = tmp_path / "copy.webp"
    copy.write_bytes(reencode(photo, "WEBP", quality=80))
    assert kind(first, photo) == "miss"
    assert kind(second, photo) == "exact"
    assert kind(second, copy) == "fuzzy"


def test_redis_restarted_mid_run_loses_no_request(
    replicas, redis_for_apps: RedisServer, unseen_photos
) -> None:
    (first, first_log), (second, _) = replicas
    photo = unseen_photos[9]
    assert kind(first, photo) == "miss" and kind(second, photo) == "exact"
    redis_for_apps.stop()
    assert [kind(first, photo), kind(second, photo)] == ["miss", "miss"]
    assert "unreachable" in first_log.read_text()
    redis_for_apps.start()  # empty: no persistence
    kinds = []
    deadline = time.monotonic() + 60
    while kinds[-2:] != ["miss", "exact"]:  # a replica retries Redis within its backoff
        assert time.monotonic() < deadline, kinds
        kinds.append(kind(first, photo))
    seen = []  # the other replica too, once its own backoff (up to 8 s) has run out
    while not seen or seen[-1] != "exact":
        assert time.monotonic() < deadline, seen
        seen.append(kind(second, photo))
    assert set(seen) <= {"miss", "exact"}  # served every time, uncached until it reconnected
