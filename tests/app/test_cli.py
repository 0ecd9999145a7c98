"""`python -m animegan` as a user runs it: a batch with one bad file, then a cached re-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.support.app import REPO, TEST_MAX_SIDE
from tests.support.http_server import running_server


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "animegan", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "ANIMEGAN_OFFLINE": "1", **(env or {})},
    )


def test_batch_reports_bad_inputs_and_reuses_the_cache(tmp_path, weights_dir, photo_paths):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for photo in photo_paths[9:11]:
        (inputs / photo.name).write_bytes(photo.read_bytes())
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    common = [
        "--weights-dir",
        str(weights_dir),
        "--max-side",
        str(TEST_MAX_SIDE),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(tmp_path / "out"),
    ]

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
    said = listing.stdout + listing.stderr
    assert said.count("for style 'paprika' was not found") == 1, said  # each missing style's reason once
    assert said.count("weights/paprika.pt") == 1, said  # and its download link once

    unknown = run_cli(
        str(photo_paths[0]),
        "--style",
        "nope",
        "--weights-dir",
        str(weights_dir),
        "--no-cache",
        "-o",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert unknown.returncode == 2 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr


def test_shared_stems_get_their_own_outputs_and_a_failed_write_does_not_stop_the_batch(
    tmp_path, weights_dir, photo_paths
):
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    first.mkdir(), second.mkdir()
    inputs = {  # input -> the output it must get
        first / "a.jpg": "a-jpg_hayao.png",
        first / "a.png": "a-png_hayao.png",
        second / "a.jpg": "a-jpg-2_hayao.png",
        first / "b.jpg": "b_hayao.png",
        first / "c.jpg": "c_hayao.png",
    }
    for (path, _), photo in zip(inputs.items(), photo_paths[-5:], strict=True):
        Image.open(photo).convert("RGB").save(path)
    (out / "b_hayao.png").mkdir(parents=True)  # this output cannot be written

    run = run_cli(
        str(first),
        str(second),
        "--weights-dir",
        str(weights_dir),
        "--max-side",
        str(TEST_MAX_SIDE),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    (failed,) = [line for line in run.stderr.splitlines() if "b_hayao.png" in line]
    assert "could not write" in failed
    assert run.stdout.count(" -> ") == 4  # the batch went on after the failed write
    for path, name in inputs.items():
        if path.stem == "b":
            continue
        result, source = Image.open(out / name), Image.open(path)
        assert abs(result.width / result.height - source.width / source.height) < 0.02, name
    a_outputs = [(out / name).read_bytes() for path, name in inputs.items() if path.stem == "a"]
    assert len(set(a_outputs)) == 3  # three pictures, none overwritten by another
    assert sorted(p.name for p in out.iterdir()) == sorted(inputs.values())  # no partial files left


def test_the_cli_downloads_through_the_mirror_unless_offline(tmp_path, weights_dir, unseen_photos):
    """paprika is a .pt style: with --download-mirror it comes from <mirror>/paprika.pt
    into the user cache; with --offline nothing is fetched and the error says what is missing."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    common = [str(unseen_photos[0]), "--style", "paprika", "--max-side", str(TEST_MAX_SIDE), "--no-cache"]
    with running_server() as mirror:
        # Any AnimeGANv2 state dict stands in for paprika's (it has no pinned checksum).
        mirror.serve("/paprika.pt", (weights_dir / "animeganv2_hayao_bryandlee.pt").read_bytes())
        offline = run_cli(
            *common, "--download-mirror", mirror.url("/"), "-o", str(tmp_path / "a"), cwd=tmp_path, env=env
        )
        assert offline.returncode == 2 and "paprika.pt" in offline.stderr, offline.stderr
        assert mirror.requests == [] and "Traceback" not in offline.stderr

        online = run_cli(
            *common,
            "--download-mirror",
            mirror.url("/"),
            "-o",
            str(tmp_path / "b"),
            cwd=tmp_path,
            env={**env, "ANIMEGAN_OFFLINE": "0"},
        )
        assert online.returncode == 0, online.stderr
        assert mirror.requests == ["/paprika.pt"]
    assert (tmp_path / "xdg" / "animegan" / "paprika.pt").is_file()
    assert (tmp_path / "b" / f"{unseen_photos[0].stem}_paprika.png").is_file()


def test_help_answers_before_the_heavy_imports_and_shows_the_defaults(tmp_path):
    """`app.py --help` reads the flags before Gradio and torch are imported."""
    shown = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "app.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in shown.stderr.splitlines()}
    assert not imported & {"gradio", "torch"}, sorted(imported & {"gradio", "torch"})
    assert "default 768" in shown.stdout and "default 8" in shown.stdout  # max side, threshold


def test_the_defaults_shown_are_the_ones_the_code_uses():
    from animegan.intake import DEFAULT_MAX_SIDE
    from cache_store import DEFAULT_THRESHOLD
    from stylize_service import settings

    assert (settings.DEFAULT_MAX_SIDE, settings.DEFAULT_THRESHOLD) == (DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD)


def test_session_scope_refuses_to_start_with_mcp(tmp_path):
    """Gradio's MCP server calls the app with one session for all MCP clients."""
    started = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--mcp", "--cache-scope", "session"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert started.returncode == 2 and "--mcp" in started.stderr and "Traceback" not in started.stderr
