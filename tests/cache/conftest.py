"""Fixtures for the cache_store tests: the project photos, fitted as the service fits them,
and where a cache lives: the tests of behaviour both backends share take `location`, a
fresh directory or an empty database on a real Redis server."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.support.cache import fit
from tests.support.redis_server import BACKENDS, fresh_location, redis_server, redis_url  # noqa: F401 (fixtures)


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    return fresh_location(request, tmp_path)


@pytest.fixture(scope="session")
def originals(photo_paths: list[Path]) -> dict[str, Image.Image]:
    """Every project photo, decoded to RGB at full size."""
    return {path.name: Image.open(path).convert("RGB") for path in photo_paths}


@pytest.fixture(scope="session")
def fitted(originals: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """Every project photo downscaled to 512 px (`cache_support.MAX_SIDE`), as the service
    fits an upload before fingerprinting it (its default is 768 px; smaller keeps the tests quick)."""
    return {name: fit(image) for name, image in originals.items()}
