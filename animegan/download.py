"""Downloading one file atomically, with a progress bar, optionally through a mirror.

Both kinds of weights source come through here: a ``.pt`` state dict, and the public file
that a recipe converts. The bytes land in a temporary file in the destination folder and
are renamed into place only after the transfer is complete and the pinned SHA-256 (when
there is one) matches, so a crash, a cut connection or a wrong file never leaves a
half-written file under the real name.

A mirror (the ``mirror`` argument, else ``ANIMEGAN_DOWNLOAD_MIRROR``) replaces every URL
with ``<mirror>/<file name of the upstream URL>``: a firewalled network, a hub mirror or
CI serves all the files from one flat folder. The pinned checksums still apply, so a
mirror cannot substitute a different file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from animegan.errors import ChecksumMismatchError, WeightsNotFoundError

ENV_MIRROR = "ANIMEGAN_DOWNLOAD_MIRROR"
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 16


def mirror_base(mirror: str | None = None) -> str | None:
    """The mirror's base URL without a trailing slash, or None for the upstream URLs."""
    chosen = mirror if mirror is not None else os.environ.get(ENV_MIRROR, "")
    return chosen.strip().rstrip("/") or None


def resolve_url(url: str, mirror: str | None = None) -> str:
    """Where ``url`` is fetched from: itself, or ``<mirror>/<its file name>``."""
    base = mirror_base(mirror)
    if base is None:
        return url
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return f"{base}/{urllib.parse.quote(name)}"


def describe_url(url: str, mirror: str | None = None) -> str:
    """The URL as a message shows it: the mirror's URL names the upstream one too."""
    resolved = resolve_url(url, mirror)
    return url if resolved == url else f"{resolved} (mirror of {url})"


def download(
    url: str,
    target: Path,
    *,
    sha256: str | None,
    what: str,
    mirror: str | None = None,
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Fetch ``url`` (or its mirror) into ``target``; ``what`` names it in messages.

    ``validate`` is called on the complete temporary file when no SHA-256 vouches for it
    and may raise to refuse it. Raises ``WeightsNotFoundError`` when the server cannot be
    reached, refuses, or the transfer stops short of its announced length, and
    ``ChecksumMismatchError`` when ``sha256`` does not match; no file is left behind.
    """
    from tqdm import tqdm

    source, shown = resolve_url(url, mirror), describe_url(url, mirror)
    by_hand = f"download {target.name} by hand and put it in {target.parent}."
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=target.name, file=sys.stderr
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                raise WeightsNotFoundError(
                    f"Could not download {what} from {shown} ({_why(exc)}); {by_hand}"
                ) from exc
        # http.client ends a body cut short by the server as if it were complete.
        if total is not None and received != total:
            raise WeightsNotFoundError(
                f"The download of {what} from {shown} stopped after {received:,} of "
                f"{total:,} bytes; try again, or {by_hand}"
            )
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise ChecksumMismatchError(
                f"The downloaded file for {what} from {shown} is not the expected file "
                f"(SHA-256 {actual}, expected {sha256}); it was discarded, try again later."
            )
        if sha256 is None and validate is not None:
            validate(tmp)
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
