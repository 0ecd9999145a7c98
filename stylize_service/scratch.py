"""Per-process scratch folders that do not outlive their process, even after a crash.

A folder is named ``<prefix><random>`` and removed when its process exits normally. Who
owns it is written next to it, in ``<prefix><random>.owner`` (host and pid), not in its
name: the folder's path is shown to visitors (Gradio serves files by their path), and a
visitor has no business learning the server's host name or process ids. A crash or
``kill -9`` skips exit handlers, so every process that makes one first removes the folders
with the same prefix left by dead processes: only those whose owner file names this host
and a pid that no longer runs, so live processes and other hosts or containers sharing the
temporary directory keep theirs. (A pid reused by an unrelated process keeps a stale folder
until that process ends too: the safe side.)
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_SUFFIX = ".owner"


def host_label() -> str:
    """This host's name as owner files record it (letters, digits, dots, dashes)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", socket.gethostname()).strip("-") or "host"


def private_dir(base: Path, prefix: str) -> Path:
    """A new folder in `base` for this process, removed at exit; stale ones are swept first."""
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale(base, prefix)
    folder = base / f"{prefix}{secrets.token_hex(8)}"
    folder.mkdir()
    owner = folder.with_name(folder.name + OWNER_SUFFIX)
    owner.write_text(f"{host_label()} {os.getpid()}\n")
    atexit.register(_remove, folder, os.getpid())
    return folder


def owner_of(folder: Path) -> tuple[str, int] | None:
    """(host, pid) from `folder`'s owner file, or None if it has none that reads."""
    try:
        host, pid = folder.with_name(folder.name + OWNER_SUFFIX).read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def sweep_stale(base: Path, prefix: str) -> list[Path]:
    """Remove `base`'s folders with `prefix` whose owner, on this host, is gone."""
    removed = []
    for owner_file in base.glob(prefix + "*" + OWNER_SUFFIX):
        folder = owner_file.with_name(owner_file.name[: -len(OWNER_SUFFIX)])
        owner = owner_of(folder)
        if owner is None or owner[0] != host_label() or pid_alive(owner[1]):
            continue
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            owner_file.unlink()
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
        with contextlib.suppress(OSError):
            folder.with_name(folder.name + OWNER_SUFFIX).unlink()
