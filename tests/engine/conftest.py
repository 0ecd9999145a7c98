"""Engine fixtures: the real Hayao stylizers (loaded once per session) and a real photo."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from animegan.inference import Stylizer, load_stylizer
from animegan.intake import open_image


@pytest.fixture(scope="session")
def fp32_stylizer(weights_dir: Path) -> Stylizer:
    return load_stylizer("hayao", weights_dir=weights_dir, precision="fp32", device="cpu")


@pytest.fixture(scope="session")
def bf16_stylizer(weights_dir: Path) -> Stylizer:
    return load_stylizer("hayao", weights_dir=weights_dir, precision="bf16", device="cpu")


@pytest.fixture(scope="session")
def scene(photos_dir: Path) -> Image.Image:
    """A real street scene (1024 x 682) as RGB."""
    return open_image(photos_dir / "scene_bryandlee_1.jpg").rgb
