"""Result images as files, because Gradio serves a file path without re-encoding it.

Handing Gradio a PIL image would cost a PNG encode (tens of ms) on every cache hit; a
path to the bytes we already have costs a copy. Files are named by their content, so a
result served many times is written once, and only the newest `keep` files are kept.

The default folder is this process's own (`scratch`): removed at exit, and swept by the
next process to start if this one crashed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from .scratch import private_dir


class ResultFiles:
    def __init__(self, directory: Path | None = None, keep: int = 256) -> None:
        self.directory = Path(directory or private_dir(Path(tempfile.gettempdir()), "animegan-results-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._files: OrderedDict[Path, None] = OrderedDict()
        self._lock = threading.Lock()

    def path_for(self, png: bytes, label: str) -> str:
        """A path holding `png`, named `anime-<label>-<digest>.png` for the download."""
        digest = hashlib.sha256(png).hexdigest()[:16]
        path = self.directory / f"anime-{label}-{digest}.png"
        with self._lock:
            if path in self._files:
                self._files.move_to_end(path)
                return str(path)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        with self._lock:
            self._files[path] = None
            while len(self._files) > self.keep:
                old, _ = self._files.popitem(last=False)
                old.unlink(missing_ok=True)
        return str(path)
