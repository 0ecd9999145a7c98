"""Fixtures for the service, app and CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.app import EXAMPLES, launch_app, stop


@pytest.fixture(scope="module")
def running_app_process(tmp_path_factory, weights_dir):
    """The app as a user starts it: (url, log path)."""
    tmp = tmp_path_factory.mktemp("app")
    proc, url, log_path = launch_app(tmp, weights_dir)
    yield url, log_path
    stop(proc)


@pytest.fixture(scope="module")
def running_app(running_app_process):
    return running_app_process[0]


@pytest.fixture(scope="session")
def unseen_photos(photo_paths: list[Path]) -> list[Path]:
    """The test photos that are not examples: an app warms its cache with the examples at
    start, and the clean photo set includes copies of them, which would be hits."""
    examples = {path.read_bytes() for path in EXAMPLES}
    return [path for path in photo_paths if path.read_bytes() not in examples]
