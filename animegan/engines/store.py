"""The on-disk cache of converted models, so only a machine's first start pays for a build.

One folder per (style, weights SHA-256, runtime version, kind, recipe version) under
``<user cache>/engines/`` (``~/.cache/animegan/engines``; ``$XDG_CACHE_HOME`` moves it), so a
new weights file, runtime or recipe never loads a stale model. A folder is built under a
temporary name and renamed into place whole (atomic on one filesystem), so a crash leaves
no half-written model behind. Its manifest (JSON) records each file's SHA-256; a folder
whose files do not match, or that cannot be read, is damaged: it is moved aside and
rebuilt. Nothing here is ever unpickled: IR is XML and raw tensors, the probe a NumPy
array read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from animegan.weights import user_cache_dir

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FILES = ("model.xml", "model.bin", "probe.npy")
_FORMAT = 1
#: Temporary folders older than this are a crashed build's leftovers.
STALE_TEMP_S = 3600.0


def default_root() -> Path:
    return user_cache_dir() / "engines"


@dataclass(frozen=True)
class StoreKey:
    """Everything a converted model depends on."""

    style: str
    weights_sha256: str
    runtime: str
    runtime_version: str
    kind: str
    recipe: int

    @property
    def folder(self) -> str:
        return (
            f"{self.style}-{self.weights_sha256[:16]}-{self.runtime}{self.runtime_version}"
            f"-{self.kind}-r{self.recipe}"
        )


class ModelStore:
    """Converted models under ``root``; safe for several processes at once."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def path(self, key: StoreKey) -> Path:
        return self.root / key.folder

    def find(self, key: StoreKey) -> Path | None:
        """The verified folder for ``key``, or None (a damaged one is moved aside first)."""
        folder = self.path(key)
        if not folder.is_dir():
            return None
        problem = _check(folder, key)
        if problem is None:
            return folder
        log.warning("engine store: %s is damaged (%s); it will be rebuilt", folder, problem)
        self.discard(folder)
        return None

    def temp_folder(self, key: StoreKey) -> Path:
        """A fresh folder to build ``key`` in, beside where it will live."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep()
        folder = self.root / f".tmp-{key.folder}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        return folder

    def publish(self, temp: Path, key: StoreKey, facts: dict[str, Any]) -> Path:
        """Write ``temp``'s manifest, flush it to disk and rename it into place. When another
        process published the same key first, theirs is kept and ``temp`` is dropped."""
        manifest = {
            "format": _FORMAT,
            **asdict(key),
            "files": {name: _sha256(temp / name) for name in FILES},
            **facts,
        }
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        for name in (*FILES, MANIFEST):
            _fsync(temp / name)
        _fsync(temp)
        final = self.path(key)
        try:
            os.rename(temp, final)  # fails if the folder exists (another process won)
        except OSError:
            shutil.rmtree(temp, ignore_errors=True)
            if self.find(key) is None:
                raise
        _fsync(self.root)
        return final

    def discard(self, folder: Path) -> None:
        """Move ``folder`` out of the way (atomically), then delete it."""
        aside = self.root / f".tmp-discarded-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    def _sweep(self) -> None:
        """Delete temporary folders that a crashed build left behind."""
        import time

        for temp in self.root.glob(".tmp-*"):
            try:
                if time.time() - temp.stat().st_mtime > STALE_TEMP_S:
                    shutil.rmtree(temp, ignore_errors=True)
            except OSError:
                pass


def manifest(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("the manifest is not a JSON object")
    return data


def _check(folder: Path, key: StoreKey) -> str | None:
    """Why ``folder`` is not a complete build of ``key``, or None."""
    try:
        data = manifest(folder)
        if data.get("format") != _FORMAT or data.get("weights_sha256") != key.weights_sha256:
            return "another format or weights"
        files = data.get("files")
        if not isinstance(files, dict):
            return "no file list"
        for name in FILES:
            if files.get(name) != _sha256(folder / name):
                return f"{name} does not match its checksum"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
