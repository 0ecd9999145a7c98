"""`python -m animegan` as a user runs it: a batch with one bad file, then a cached re-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from app_support import REPO, TEST_MAX_SIDE


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "animegan", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "ANIMEGAN_OFFLINE": "1"},
    )


def test_batch_reports_bad_inputs_and_reuses_the_cache(tmp_path, weights_dir, photo_paths):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for photo in photo_paths[9:11]:
        (inputs / photo.name).write_bytes(photo.read_bytes())
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    common = ["--weights-dir", str(weights_dir), "--max-side", str(TEST_MAX_SIDE),
              "--cache-dir", str(tmp_path / "cache"), "-o", str(tmp_path / "out")]

    first = run_cli(str(inputs), *common, cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    bad_lines = [line for line in first.stderr.splitlines() if "broken.jpg" in line]
    assert len(bad_lines) == 1 and "Traceback" not in first.stderr, first.stderr
    outputs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in outputs] == sorted(f"{p.stem}_hayao.png" for p in photo_paths[9:11])
    assert all(max(Image.open(p).size) == TEST_MAX_SIDE for p in outputs)
    assert first.stdout.count("generated") == 2

    second = run_cli(*(str(inputs / p.name) for p in photo_paths[9:11]), *common, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("exact hit") == 2


def test_list_styles_and_unknown_style(tmp_path, weights_dir, photo_paths):
    listing = run_cli("--list-styles", "--weights-dir", str(weights_dir), cwd=tmp_path)
    assert listing.returncode == 0
    hayao = next(line for line in listing.stdout.splitlines() if line.startswith("hayao"))
    assert "available" in hayao
    assert "missing" in next(line for line in listing.stdout.splitlines() if line.startswith("paprika"))

    unknown = run_cli(str(photo_paths[0]), "--style", "nope", "--weights-dir", str(weights_dir),
                      "--no-cache", "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert unknown.returncode == 2 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr
