"""Shared fixtures: which real weights and which photos the tests run on.

With ``../shared`` next to the repository (CI, the team's machines), or with
``ANIMEGAN_WEIGHTS_DIR`` / ``ANIMEGAN_PHOTOS_DIR`` set, the tests use those: real weights
and 40 real photos. On a fresh clone without them, the weights are obtained the way a
user gets them (downloaded and built into the user cache, honouring
``ANIMEGAN_DOWNLOAD_MIRROR`` and ``ANIMEGAN_OFFLINE``), and the photos are the
license-clean set of ``photo_sets`` (``ANIMEGAN_PHOTO_SET=clean`` picks it even when the
shared photos are there). Either way the same tests run; nothing skips. A
named folder without the files, or weights that cannot be obtained, fail the run, so a
broken set-up cannot pass silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.photo_sets import PhotoSet, clean_set, shared_set

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "examples"

#: The styles the tests run: both are obtainable on a fresh machine (built by recipes).
TEST_STYLES = ("hayao", "whitebox")


def _named_dir(var: str, shared: Path) -> Path | None:
    """The folder named by ``var``, else ``shared`` if it exists, else None."""
    if os.environ.get(var):
        return Path(os.environ[var]).expanduser().resolve()
    return shared.resolve() if shared.is_dir() else None


def _obtain_test_weights() -> Path:
    """Download and build the test styles' weights into the user cache, as the app would."""
    from animegan.errors import WeightsError
    from animegan.styles import STYLES
    from animegan.weights import ensure_weights

    offline = os.environ.get("ANIMEGAN_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        paths = [ensure_weights(STYLES[name], None, allow_download=not offline) for name in TEST_STYLES]
    except WeightsError as exc:
        pytest.fail(
            f"no ../shared/weights and the test weights could not be obtained: {exc} "
            "(allow downloads, set ANIMEGAN_DOWNLOAD_MIRROR, or set ANIMEGAN_WEIGHTS_DIR)"
        )
    folders = {path.parent.resolve() for path in paths}
    if len(folders) != 1:  # the tests pass one folder around, like the app's --weights-dir
        pytest.fail(f"the test weights are split across folders: {paths}; set ANIMEGAN_WEIGHTS_DIR")
    return folders.pop()


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    path = _named_dir("ANIMEGAN_WEIGHTS_DIR", SHARED / "weights")
    if path is None:
        return _obtain_test_weights()
    from animegan.styles import STYLES

    missing = [STYLES[n].filename for n in TEST_STYLES if not (path / STYLES[n].filename).is_file()]
    if missing:
        pytest.fail(f"real weights not found in {path} ({', '.join(missing)}): set ANIMEGAN_WEIGHTS_DIR")
    return path


@pytest.fixture(scope="session")
def source_files(weights_dir: Path) -> dict[str, Path]:
    """Each test style's recipe source (the public .tflite), where the weights came from."""
    from animegan.styles import STYLES
    from animegan.weights import find_file

    found = {}
    for name in TEST_STYLES:
        filename = STYLES[name].recipe.source.filename
        path = find_file(filename, weights_dir)
        if path is None:
            pytest.fail(f"the source {filename} of style {name!r} is not in {weights_dir}")
        found[name] = path
    return found


@pytest.fixture(scope="session")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> PhotoSet:
    chosen = os.environ.get("ANIMEGAN_PHOTO_SET", "").strip()
    if chosen not in ("", "shared", "clean"):
        pytest.fail(f"ANIMEGAN_PHOTO_SET={chosen!r}: use shared or clean")
    path = None if chosen == "clean" else _named_dir("ANIMEGAN_PHOTOS_DIR", SHARED / "photos")
    if path is None and chosen == "shared":
        pytest.fail("ANIMEGAN_PHOTO_SET=shared, but there is no ../shared/photos or ANIMEGAN_PHOTOS_DIR")
    if path is None:
        return clean_set(tmp_path_factory.mktemp("clean-photos"), EXAMPLES)
    if not any(path.glob("*.jpg")):
        pytest.fail(f"test photos not found in {path}: set ANIMEGAN_PHOTOS_DIR")
    return shared_set(path)


@pytest.fixture(scope="session")
def photos_dir(photo_set: PhotoSet) -> Path:
    return photo_set.directory


@pytest.fixture(scope="session")
def photo_paths(photo_set: PhotoSet) -> list[Path]:
    return photo_set.paths


#: What some tests need beyond `make test`'s own installs, and how they are named in skips.
PREREQUISITES = {
    "redis-server": ("redis-server is not installed", "apt-get install redis-server"),
    "chromium": ("chromium is not installed", "apt-get install chromium"),
}


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """End every run with the prerequisites: found, or missing and how many tests skipped."""
    import shutil

    skipped = terminalreporter.stats.get("skipped", [])
    lines = []
    for program, (reason, install) in PREREQUISITES.items():
        where = shutil.which(program)
        count = sum(1 for report in skipped if reason in str(report.longrepr))
        if where:
            lines.append(f"{program}: found ({where})")
        else:
            lines.append(f"{program}: MISSING, {count} tests skipped ({install})")
    terminalreporter.write_sep("-", "prerequisites")
    for line in lines:
        terminalreporter.write_line(line)
