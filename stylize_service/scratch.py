"""Per-process scratch folders that do not outlive their process, even after a crash.

A folder is named ``<prefix><host>-<pid>-<random>`` and removed when its process exits
normally. A crash or ``kill -9`` skips exit handlers, so every process that makes one first
removes the folders with the same prefix left by dead processes: only folders named after
this host whose pid no longer runs, so live processes and other hosts or containers sharing
the temporary directory keep theirs. (A pid reused by an unrelated process keeps a stale
folder until that process ends too: the safe side.)
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

log = logging.getLogger(__name__)


def host_label() -> str:
    """This host's name as it appears in folder names (letters, digits, dots, dashes)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", socket.gethostname()).strip("-") or "host"


def private_dir(base: Path, prefix: str) -> Path:
    """A new folder in `base` for this process, removed at exit; stale ones are swept first."""
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale(base, prefix)
    folder = base / f"{prefix}{host_label()}-{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir()
    atexit.register(_remove, folder, os.getpid())
    return folder


def sweep_stale(base: Path, prefix: str) -> list[Path]:
    """Remove `base`'s folders with `prefix` whose process, on this host, is gone."""
    pattern = re.compile(re.escape(prefix + host_label()) + r"-(\d+)-[0-9a-f]+")
    removed = []
    for folder in base.glob(prefix + "*"):
        found = pattern.fullmatch(folder.name)
        if found is None or folder.is_symlink() or not folder.is_dir() or pid_alive(int(found[1])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d scratch folder(s) of crashed processes in %s", len(removed), base)
    return removed


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child that inherited the exit handler
        shutil.rmtree(folder, ignore_errors=True)
