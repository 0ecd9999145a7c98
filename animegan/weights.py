"""Finding, downloading and reading weights files.

Look-up order for a style's file: the explicit directory (argument, else the
``ANIMEGAN_WEIGHTS_DIR`` environment variable), ``./weights/``, then the user cache
(``$XDG_CACHE_HOME/animegan``, default ``~/.cache/animegan``). A missing file with a known
URL is downloaded into the explicit directory if one is given, else into the user cache;
the download lands in a temporary file in that directory and is renamed into place only
after its checksum passes, so a crash or a bad file never leaves a half-written ``.pt``.

Files are read with ``torch.load(..., weights_only=True)``: a weights file is data, and
unpickling arbitrary objects from it would be code execution. torch is imported only when
a file is actually read, so listing available styles stays cheap.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animegan.errors import ChecksumMismatchError, WeightsCorruptError, WeightsNotFoundError
from animegan.styles import STYLES, Style

if TYPE_CHECKING:
    from torch import Tensor

ENV_WEIGHTS_DIR = "ANIMEGAN_WEIGHTS_DIR"
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 16


def user_cache_dir() -> Path:
    """Per-user directory for downloaded weights."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "animegan"


def explicit_dir(weights_dir: str | Path | None = None) -> Path | None:
    """The caller's directory, else the one named by ``ANIMEGAN_WEIGHTS_DIR``, else None."""
    chosen = weights_dir if weights_dir is not None else os.environ.get(ENV_WEIGHTS_DIR)
    return Path(chosen).expanduser() if chosen else None


def search_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """Directories searched for weights files, in order."""
    first = explicit_dir(weights_dir)
    return ([first] if first else []) + [Path("weights"), user_cache_dir()]


def find_weights(style: Style, weights_dir: str | Path | None = None) -> Path | None:
    """Path of ``style``'s file in the first search directory that has it, or None."""
    for directory in search_dirs(weights_dir):
        candidate = directory / style.filename
        if candidate.is_file():
            return candidate
    return None


def available_styles(weights_dir: str | Path | None = None) -> list[Style]:
    """Styles whose weights file is present now (nothing is downloaded)."""
    return [style for style in STYLES.values() if find_weights(style, weights_dir)]


def ensure_weights(
    style: Style, weights_dir: str | Path | None = None, *, allow_download: bool = True
) -> Path:
    """Path of ``style``'s weights file, downloading it first if it is missing and can be."""
    found = find_weights(style, weights_dir)
    if found is not None:
        return found
    dest_dir = explicit_dir(weights_dir) or user_cache_dir()
    if style.url is None or not allow_download:
        where = " or ".join(str(d) for d in search_dirs(weights_dir))
        how = "" if style.url is None else f" (download it from {style.url})"
        raise WeightsNotFoundError(
            f"The weights file {style.filename} for style {style.name!r} was not found; "
            f"put it in {where}{how}, or point {ENV_WEIGHTS_DIR} at the folder that has it."
        )
    return download_weights(style, dest_dir)


def download_weights(style: Style, dest_dir: Path) -> Path:
    """Download ``style.url`` into ``dest_dir / style.filename`` with a progress bar.

    Raises ``WeightsNotFoundError`` when the server cannot be reached, refuses, or the
    transfer stops short of its announced length, ``ChecksumMismatchError`` when a recorded
    SHA-256 does not match, and ``WeightsCorruptError`` when a style without a recorded
    SHA-256 gets a file that is not a state dict (an error page, say); in every case no
    file is left behind, so the next attempt starts clean.
    """
    from tqdm import tqdm

    assert style.url is not None
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / style.filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{style.filename}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(style.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=style.filename, file=sys.stderr
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                raise WeightsNotFoundError(
                    f"Could not download the weights for style {style.name!r} from {style.url} "
                    f"({_why(exc)}); download {style.filename} by hand and put it in {dest_dir}."
                ) from exc
        # http.client ends a body cut short by the server as if it were complete.
        if total is not None and received != total:
            raise WeightsNotFoundError(
                f"The download of the weights for style {style.name!r} from {style.url} stopped "
                f"after {received:,} of {total:,} bytes; try again, or download "
                f"{style.filename} by hand and put it in {dest_dir}."
            )
        actual = digest.hexdigest()
        if style.sha256 is not None and actual != style.sha256:
            raise ChecksumMismatchError(
                f"The downloaded weights for style {style.name!r} are not the expected file "
                f"(SHA-256 {actual}, expected {style.sha256}); it was discarded, try again later."
            )
        if style.sha256 is None:  # nothing else vouches for the file: it must at least load
            try:
                read_weights(tmp)
            except WeightsCorruptError as exc:
                raise WeightsCorruptError(
                    f"The file downloaded from {style.url} for style {style.name!r} is not a "
                    "PyTorch state dict (the server may have sent an error page); it was "
                    f"discarded. Download {style.filename} by hand and put it in {dest_dir}."
                ) from exc
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _why(exc: Exception) -> str:
    """A download failure in words: "HTTP 404 Not Found", "connection refused", "timed out"."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", exc)  # URLError wraps the socket error
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


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
            f"The weights file {path} does not hold a state dict of tensors; "
            "replace it with the right file."
        )
    return LoadedWeights(path=path, sha256=sha256, state_dict=state)
