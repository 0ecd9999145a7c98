"""Finding, obtaining and reading weights files.

Look-up order for a style's file: the explicit directory (argument, else the
``ANIMEGAN_WEIGHTS_DIR`` environment variable), ``./weights/``, then the user cache
(``$XDG_CACHE_HOME/animegan``, default ``~/.cache/animegan``). A missing file is then
obtained from where the registry says it comes from (``animegan.styles``):

* a direct ``.pt`` URL: downloaded into the explicit directory if one is given, else into
  the user cache (``animegan.download``: progress bar, atomic, checksum);
* a recipe: its pinned source file is looked up in the same places, else downloaded into
  the user cache, and converted there (``animegan.recipes``). Converting a source that is
  already on disk needs no network, so it happens offline too.

``ANIMEGAN_DOWNLOAD_MIRROR`` (or the ``mirror`` argument) fetches every file from
``<mirror>/<file name>`` instead of its upstream URL.

Files are read with ``torch.load(..., weights_only=True)``: a weights file is data, and
unpickling arbitrary objects from it would be code execution. torch is imported only when
a file is actually read or built, so listing available styles stays cheap.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animegan.download import ENV_MIRROR, describe_url, download
from animegan.errors import ChecksumMismatchError, WeightsCorruptError, WeightsNotFoundError
from animegan.styles import STYLES, Style

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "ENV_MIRROR",
    "ENV_WEIGHTS_DIR",
    "LoadedWeights",
    "available_styles",
    "download_weights",
    "ensure_weights",
    "find_file",
    "find_weights",
    "read_weights",
    "search_dirs",
    "user_cache_dir",
]

ENV_WEIGHTS_DIR = "ANIMEGAN_WEIGHTS_DIR"


def user_cache_dir() -> Path:
    """Per-user directory for downloaded and built weights."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "animegan"


def explicit_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The caller's directory, else the one named by ``ANIMEGAN_WEIGHTS_DIR``, else None."""
    chosen = weights_dir if weights_dir is not None else os.environ.get(ENV_WEIGHTS_DIR)
    return Path(chosen).expanduser() if chosen else None


def search_dirs(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for weights and source files, in order."""
    first = explicit_dir(weights_dir)
    return ([first] if first else []) + [Path("weights"), user_cache_dir()]


def find_file(filename: str, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Path of ``filename`` in the first search directory that has it, or None."""
    for directory in search_dirs(weights_dir):
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    return None


def find_weights(style: Style, weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Path of ``style``'s file in the first search directory that has it, or None."""
    return find_file(style.filename, weights_dir)


def available_styles(weights_dir: str | os.PathLike[str] | None = None) -> list[Style]:
    """Styles whose weights file is present now (nothing is downloaded or built)."""
    return [style for style in STYLES.values() if find_weights(style, weights_dir)]


def ensure_weights(
    style: Style,
    weights_dir: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    mirror: str | None = None,
) -> Path:
    """Path of ``style``'s weights file, downloading or building it first if it is missing."""
    found = find_weights(style, weights_dir)
    if found is not None:
        return found
    where = " or ".join(str(d) for d in search_dirs(weights_dir))
    if style.recipe is not None:
        return _build_from_source(style, weights_dir, where, allow_download, mirror)
    if style.url is None or not allow_download:
        how = "" if style.url is None else f" (download it from {describe_url(style.url, mirror)})"
        raise WeightsNotFoundError(
            f"The weights file {style.filename} for style {style.name!r} was not found; "
            f"put it in {where}{how}, or point {ENV_WEIGHTS_DIR} at the folder that has it."
        )
    return download_weights(style, explicit_dir(weights_dir) or user_cache_dir(), mirror=mirror)


def _build_from_source(
    style: Style,
    weights_dir: str | os.PathLike[str] | None,
    where: str,
    allow_download: bool,
    mirror: str | None,
) -> Path:
    """Build ``style``'s file in the user cache from its recipe's source, fetched if needed."""
    from animegan.recipes import build_weights

    assert style.recipe is not None
    pinned = style.recipe.source
    source = find_file(pinned.filename, weights_dir)
    if source is None and not allow_download:
        raise WeightsNotFoundError(
            f"The weights file {style.filename} for style {style.name!r} was not found, nor "
            f"its source {pinned.filename} to build it from; put either in {where} (the "
            f"source is at {describe_url(pinned.url, mirror)}), or allow downloads."
        )
    if source is None:
        source = download(
            pinned.url,
            user_cache_dir() / pinned.filename,
            sha256=pinned.sha256,
            what=f"the source of style {style.name!r}'s weights",
            mirror=mirror,
        )
    return build_weights(style, source, user_cache_dir())


def download_weights(style: Style, dest_dir: Path, *, mirror: str | None = None) -> Path:
    """Download ``style.url`` into ``dest_dir / style.filename`` with a progress bar.

    Raises ``WeightsNotFoundError`` when the server cannot be reached, refuses, or the
    transfer stops short of its announced length, ``ChecksumMismatchError`` when a recorded
    SHA-256 does not match, and ``WeightsCorruptError`` when a style without a recorded
    SHA-256 gets a file that is not a state dict (an error page, say); in every case no
    file is left behind, so the next attempt starts clean.
    """
    assert style.url is not None
    url = style.url

    def must_load(path: Path) -> None:  # nothing else vouches for the file
        try:
            read_weights(path)
        except WeightsCorruptError as exc:
            raise WeightsCorruptError(
                f"The file downloaded from {describe_url(url, mirror)} for style "
                f"{style.name!r} is not a PyTorch state dict (the server may have sent an "
                f"error page); it was discarded. Download {style.filename} by hand and put "
                f"it in {dest_dir}."
            ) from exc

    return download(
        style.url,
        dest_dir / style.filename,
        sha256=style.sha256,
        what=f"the weights for style {style.name!r}",
        mirror=mirror,
        validate=must_load,
    )


@dataclass(frozen=True)
class LoadedWeights:
    """A state dict together with the file it came from and that file's SHA-256."""

    path: Path
    sha256: str
    state_dict: dict[str, Tensor]


def read_weights(path: Path, expected_sha256: str | None = None) -> LoadedWeights:
    """Read a state dict from ``path``, hashing exactly the bytes that are loaded.

    Raises ``ChecksumMismatchError`` if ``expected_sha256`` is given and differs, and
    ``WeightsCorruptError`` for anything that is not a readable tensor state dict.
    """
    import torch

    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ChecksumMismatchError(
            f"The weights file {path} is damaged or not the expected file (SHA-256 {sha256}, "
            f"expected {expected_sha256}); replace it with a fresh copy."
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a bad archive
        raise WeightsCorruptError(
            f"The weights file {path} could not be read ({type(exc).__name__}); it is damaged "
            "or not a PyTorch state dict. Replace it with a fresh copy."
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsCorruptError(
            f"The weights file {path} does not hold a state dict of tensors; replace it with the right file."
        )
    return LoadedWeights(path=path, sha256=sha256, state_dict=state)
