"""Engine fixtures: the real Hayao stylizers (loaded once per session), a street scene and
a local HTTP server for download tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from animegan.inference import Stylizer, load_stylizer
from animegan.intake import open_image
from tests.support.http_server import Server, running_server


@pytest.fixture(scope="session")
def fp32_stylizer(weights_dir: Path) -> Stylizer:
    return load_stylizer("hayao", weights_dir=weights_dir, precision="fp32", device="cpu")


@pytest.fixture(scope="session")
def bf16_stylizer(weights_dir: Path) -> Stylizer:
    return load_stylizer("hayao", weights_dir=weights_dir, precision="bf16", device="cpu")


@pytest.fixture(scope="session")
def scene(photo_set) -> Image.Image:
    """The active photo set's street scene (about 1024 x 683) as RGB."""
    return open_image(photo_set.photo("street")).rgb


@pytest.fixture
def server() -> Iterator[Server]:
    """A local HTTP server for download tests (see http_support)."""
    with running_server() as srv:
        yield srv
