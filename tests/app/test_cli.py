"""`python -m animegan` as a user runs it: a batch with one bad file, then a cached re-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from app_support import REPO, TEST_MAX_SIDE
from http_support import running_server


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "animegan", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "ANIMEGAN_OFFLINE": "1", **(env or {})},
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


def test_the_cli_downloads_through_the_mirror_unless_offline(tmp_path, weights_dir, unseen_photos):
    """paprika is a .pt style: with --download-mirror it comes from <mirror>/paprika.pt
    into the user cache; with --offline nothing is fetched and the error says what is missing."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    common = [str(unseen_photos[0]), "--style", "paprika", "--max-side", str(TEST_MAX_SIDE), "--no-cache"]
    with running_server() as mirror:
        # Any AnimeGANv2 state dict stands in for paprika's (it has no pinned checksum).
        mirror.serve("/paprika.pt", (weights_dir / "animeganv2_hayao_bryandlee.pt").read_bytes())
        offline = run_cli(*common, "--download-mirror", mirror.url("/"), "-o", str(tmp_path / "a"),
                          cwd=tmp_path, env=env)
        assert offline.returncode == 2 and "paprika.pt" in offline.stderr, offline.stderr
        assert mirror.requests == [] and "Traceback" not in offline.stderr

        online = run_cli(*common, "--download-mirror", mirror.url("/"), "-o", str(tmp_path / "b"),
                         cwd=tmp_path, env={**env, "ANIMEGAN_OFFLINE": "0"})
        assert online.returncode == 0, online.stderr
        assert mirror.requests == ["/paprika.pt"]
    assert (tmp_path / "xdg" / "animegan" / "paprika.pt").is_file()
    assert (tmp_path / "b" / f"{unseen_photos[0].stem}_paprika.png").is_file()
