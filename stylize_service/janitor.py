"""Keeping the server's temporary folder small, and its disk from filling up.

Gradio keeps every upload, and a copy of every result it serves, in its temporary folder,
and deletes them an hour later at the earliest. Anyone can upload without ever asking for
a stylization, so on a public demo that folder is a way to fill the disk, and a full disk
fails every request that needs a write, hits included. The janitor removes what is older
than `ttl_s` (the photos a visitor left behind), and while the file system's free space is
below `reserve_bytes` it removes the oldest files first, down to those of the last
`min_age_s` (an upload about to be stylized), or of the last `PRESSED_MIN_AGE_S` while
the reserve is not back (a visitor who uploaded a minute ago is asked to upload again;
everyone's hits keep working). Files it was told to `protect` (the examples) stay.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: Files older than this go (a visitor's uploads and the results served to them).
DEFAULT_TTL_S = 900.0
#: Nothing younger than this is removed while space is fine ...
MIN_AGE_S = 60.0
#: ... nor younger than this while it is short.
PRESSED_MIN_AGE_S = 5.0
#: How often the folder is swept, and how often free space is checked.
SWEEP_EVERY_S = 60.0
CHECK_EVERY_S = 2.0
#: Free space kept on the folder's file system: this much, or this share of a small one.
RESERVE_BYTES = 256 << 20
RESERVE_SHARE = 0.1


class Janitor:
    def __init__(
        self,
        folder: Path,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        min_age_s: float = MIN_AGE_S,
        reserve_bytes: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.ttl_s = ttl_s
        self.min_age_s = min_age_s
        if reserve_bytes is None:
            total = shutil.disk_usage(self.folder).total
            reserve_bytes = min(RESERVE_BYTES, int(total * RESERVE_SHARE))
        self.reserve_bytes = reserve_bytes
        self._protected: set[Path] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def protect(self, paths: list[Path]) -> None:
        """Never remove these files (resolved paths inside the folder)."""
        self._protected.update(path.resolve() for path in paths)

    def protect_present(self) -> None:
        """Protect every file in the folder now: what the app put there while starting."""
        self.protect([path for path, _, _ in self._files()])

    def start(self) -> Janitor:
        self._thread = threading.Thread(target=self._run, name="temp-janitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def sweep(self) -> int:
        """Remove expired files, then old ones while space is short; returns bytes freed."""
        now = time.time()
        files = sorted(self._files(), key=lambda item: item[1])  # oldest first
        freed = 0
        short = self._shortfall()
        for path, modified, size in files:
            age = now - modified
            pressed = freed < short
            if age < (PRESSED_MIN_AGE_S if pressed else self.min_age_s):
                break
            if age < self.ttl_s and not pressed:
                continue
            if self._remove(path):
                freed += size
        if freed:
            log.info("removed %.1f MB of old temporary files", freed / 2**20)
        self._prune_empty_folders()
        return freed

    def _run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_EVERY_S
        while not self._stop.wait(CHECK_EVERY_S):
            try:
                if time.monotonic() >= next_sweep or self._shortfall() > 0:
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                    self.sweep()
            except Exception:
                log.exception("sweeping the temporary folder failed")

    def _shortfall(self) -> int:
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return 0
        return max(0, self.reserve_bytes - free)

    def _files(self) -> list[tuple[Path, float, int]]:
        found = []
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = Path(root) / name
                try:
                    stat = path.lstat()
                except OSError:
                    continue
                if path.resolve() not in self._protected:
                    found.append((path, stat.st_mtime, stat.st_blocks * 512))
        return found

    def _remove(self, path: Path) -> bool:
        try:
            path.unlink()
            return True
        except OSError:
            return False

    def _prune_empty_folders(self) -> None:
        """Remove empty folders untouched for `PRESSED_MIN_AGE_S` (not one that a writer has
        just made and is about to fill)."""
        cutoff = time.time() - PRESSED_MIN_AGE_S
        for root, folders, names in os.walk(self.folder, topdown=False):
            if Path(root) == self.folder or folders or names:
                continue
            try:
                if os.stat(root).st_mtime < cutoff:
                    os.rmdir(root)
            except OSError:
                pass
