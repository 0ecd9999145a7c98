"""Fixtures for the service, app and CLI tests."""

from __future__ import annotations

import pytest
from app_support import launch_app, stop


@pytest.fixture(scope="module")
def running_app(tmp_path_factory, weights_dir):
    tmp = tmp_path_factory.mktemp("app")
    proc, url, log_path = launch_app(tmp, weights_dir)
    yield url
    stop(proc)
