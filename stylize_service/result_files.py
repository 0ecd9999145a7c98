"""Result images as files, because Gradio serves a file path without re-encoding it.

Handing Gradio a PIL image would cost a PNG encode (tens of ms) on every cache hit; a
path to the bytes we already have costs a write, and none more when the folder is inside
Gradio's own temporary folder (the app's choice), which Gradio serves from without a copy.
Files are named by their content, so a result served many times is written once, and only
the newest `keep` files are kept. A write that finds the disk full makes room among them
and tries once more, then fails with a message for the visitor, never a server error.

The default folder is this process's own (`scratch`): removed at exit, and swept by the
next process to start if this one crashed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from animegan.errors import AnimeGANError

from .scratch import private_dir

log = logging.getLogger(__name__)


class DiskFullError(AnimeGANError):
    """No room on the disk for the result file, even after removing older ones."""


class ResultFiles:
    def __init__(self, directory: Path | None = None, keep: int = 256) -> None:
        self.directory = Path(directory or private_dir(Path(tempfile.gettempdir()), "animegan-results-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._files: OrderedDict[Path, None] = OrderedDict()
        self._lock = threading.Lock()

    def path_for(self, png: bytes, label: str, suffix: str = ".png") -> str:
        """A path holding `png` (or another result: `suffix`), named
        `anime-<label>-<digest><suffix>` for the download."""
        digest = hashlib.sha256(png).hexdigest()[:16]
        path = self.directory / f"anime-{label}-{digest}{suffix}"
        with self._lock:
            if path in self._files and path.exists():  # a janitor may have removed it
                self._files.move_to_end(path)
                return str(path)
        try:
            self._write(path, png)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._drop_oldest(max(1, len(self._files) // 2))  # make room, and try once more
            try:
                self._write(path, png)
            except OSError as again:
                log.warning("no room for a result file in %s: %s", self.directory, again)
                raise DiskFullError(
                    "The server is short of disk space right now; please try again in a minute."
                ) from None
        with self._lock:
            self._files[path] = None
        self._drop_oldest(len(self._files) - self.keep)
        return str(path)

    @staticmethod
    def _write(path: Path, png: bytes) -> None:
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # a janitor may have removed it empty
            tmp.write_bytes(png)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _drop_oldest(self, count: int) -> None:
        with self._lock:
            old = [self._files.popitem(last=False)[0] for _ in range(min(max(count, 0), len(self._files)))]
        for path in old:
            path.unlink(missing_ok=True)
