"""A real `redis-server` for the tests (Debian's package; `.ci/run` installs it).

Each server runs on 127.0.0.1 on a free port, in its own temporary directory, with no
persistence, so a restart starts empty like a crashed cache server. Without the binary the
Redis tests skip locally and fail in CI (the CI environment variable is set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cache_store.envelope import unpack
from tests.support.app import free_port

#: The Redis tests' databases: 0 for tests that flush it, 1 for module-wide fixtures.
FLUSHED_DB, MODULE_DB = 0, 1
#: Parameters of a fixture for the tests that both backends must pass.
BACKENDS = ["disk", pytest.param("redis", marks=pytest.mark.redis)]


class RedisServer:
    """A redis-server on 127.0.0.1 in `directory`, without persistence; `settings` are more
    command-line options (the benchmark's maxmemory policy, say)."""

    def __init__(self, directory: Path, settings: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.settings = settings
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = FLUSHED_DB) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = FLUSHED_DB) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, socket_timeout=5)

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--databases",
                    "4",
                    *self.settings,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start:\n{(self.directory / 'redis.log').read_text()}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def require_redis_server() -> None:
    if shutil.which("redis-server") or Path("/usr/bin/redis-server").exists():
        return
    message = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def running_server(directory: Path) -> Iterator[RedisServer]:
    """Body of a server fixture: started, yielded, stopped."""
    require_redis_server()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fresh_location(request: pytest.FixtureRequest, directory: Path, db: int = FLUSHED_DB) -> Path | str:
    """For a fixture parametrized over BACKENDS: `directory`, or database `db` emptied."""
    if request.param == "disk":
        return directory
    server = request.getfixturevalue("redis_server")
    server.client(db).flushdb()
    return server.url(db)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the session's Redis tests (tests that stop Redis start their own)."""
    yield from running_server(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """An empty database on the session's server."""
    redis_server.client().flushdb()
    return redis_server.url()


def check_redis(client: redis.Redis, prefix: str = "rc:") -> dict[str, int]:
    """Assert the store's invariants in Redis; return counts like `check_store`.

    Every alias and stream entry points at a stored value (and the value names that entry),
    every value is a readable envelope whose bytes name its own key, and nothing is pickled.
    """
    from tests.support.cache import value_matches

    values = {key.decode()[len(prefix) :] for key in client.scan_iter(match=f"{prefix}v:*")}
    aliases = [client.get(key).decode() for key in client.scan_iter(match=f"{prefix}r:*")]
    rows = []
    for stream in client.scan_iter(match=f"{prefix}x:*"):
        for entry_id, fields in client.xrange(stream):
            key = fields[b"k"].decode()
            assert key in values, "fuzzy row without a value"
            assert client.hget(prefix + key, "q") + b"-0" == entry_id, "row and value disagree on the seq"
            rows.append(key)
    assert all(key in values for key in aliases), "alias without a value"
    assert len(set(rows)) == len(rows)
    for key in values:
        assert client.type(prefix + key) == b"hash"
        value, _, _ = unpack(client.hget(prefix + key, "b"))
        assert value_matches(key.rsplit(":", 1)[1], value), f"torn or swapped value under {key}"
    return {"values": len(values), "rows": len(rows), "aliases": len(aliases)}
