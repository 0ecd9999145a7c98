"""Shared fixtures: where the real weights and the real photos live.

Tests that need the weights never skip in CI: `.ci/run` sets ANIMEGAN_WEIGHTS_DIR, and a
missing directory is a failure there, so a broken set-up cannot pass silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _dir_from_env(var: str, default: Path) -> Path:
    return Path(os.environ.get(var) or default).resolve()


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    path = _dir_from_env("ANIMEGAN_WEIGHTS_DIR", SHARED / "weights")
    if not (path / "animeganv2_hayao_bryandlee.pt").is_file():
        pytest.fail(f"real weights not found in {path}: set ANIMEGAN_WEIGHTS_DIR")
    return path


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    path = _dir_from_env("ANIMEGAN_PHOTOS_DIR", SHARED / "photos")
    if not any(path.glob("*.jpg")):
        pytest.fail(f"test photos not found in {path}: set ANIMEGAN_PHOTOS_DIR")
    return path


@pytest.fixture(scope="session")
def photo_paths(photos_dir: Path) -> list[Path]:
    return sorted(photos_dir.glob("*.jpg"))
