"""The temporary folder's janitor: old uploads go, the examples stay, and a short disk gets
its reserve back from the oldest files first."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from stylize_service.janitor import Janitor


def planted(folder: Path, name: str, age_s: float, size: int = 4096) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    when = time.time() - age_s
    os.utime(path, (when, when))
    os.utime(path.parent, (when, when))
    return path


def test_expired_files_go_and_examples_and_recent_uploads_stay(tmp_path):
    example = planted(tmp_path, "aa/astronaut.jpg", age_s=10_000)
    janitor = Janitor(tmp_path, ttl_s=600, reserve_bytes=0)
    janitor.protect_present()
    old = planted(tmp_path, "bb/left-behind.jpg", age_s=700)
    recent = planted(tmp_path, "cc/just-uploaded.jpg", age_s=30)
    janitor.sweep()
    assert example.exists() and recent.exists() and not old.exists()
    a_while_ago = time.time() - 60
    os.utime(old.parent, (a_while_ago, a_while_ago))
    janitor.sweep()
    assert not old.parent.exists()  # an emptied folder goes once nobody touched it for a while


def test_a_short_disk_frees_the_oldest_files_first(tmp_path):
    files = [planted(tmp_path, f"{i:02d}/upload.jpg", age_s=300 - i, size=64 << 10) for i in range(10)]
    newest = planted(tmp_path, "zz/this-second.jpg", age_s=0)
    free = shutil.disk_usage(tmp_path).free
    janitor = Janitor(tmp_path, ttl_s=3600, reserve_bytes=free + (200 << 10))  # 200 KB short
    freed = janitor.sweep()
    assert freed >= 200 << 10
    gone = [path for path in files if not path.exists()]
    assert gone == files[: len(gone)], "removed out of age order"
    assert 3 <= len(gone) < len(files) and newest.exists()
