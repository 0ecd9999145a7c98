"""Clips through the cached service: frames per second, model runs, the same clip again.

Not a test. With the real model and a real cache, on clips generated here (a camera on a
tripod, then panning, then a cut to another still scene: 6 s at 24 fps, with sound):

* frames per second of a first upload (every frame decoded in a worker, looked up, the new
  ones stylized, encoded, the sound copied) at 320 and 512 px (goal: at least 4 at 320);
* model runs against frames, for that clip with still parts;
* the same clip uploaded again, as a ratio of its first upload's time (goal: at most 0.25);
* a miss's frame throughput against stylizing the same frames as separate photos (each
  frame saved as a PNG and sent through the photo path), measured side by side: what the
  clip path costs or saves per new frame.

Usage: python -m bench.bench_video (weights as for the tests). Writes bench/results/video.md.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path

import av
from PIL import Image

from animegan.engines import label
from bench.common import machine_line, table, weights_dir, write_result
from cache_store import ResultCache
from stylize_service.clips import ClipService
from stylize_service.service import StylizeService
from tests.support import clips as make

SIDES = (320, 512)
FPS = 24
SECONDS_PER_PART = 2
SOURCE = (960, 540)
ROUNDS = 2


def tripod_pan_cut(folder: Path) -> Path:
    """2 s still, 2 s panning, 2 s still on another scene, 24 fps, 960 x 540, with sound."""
    part = FPS * SECONDS_PER_PART
    frames = (
        make.still_shot(part, SOURCE, seed=4)
        + make.slow_pan(part, SOURCE, step=6, seed=5)
        + make.still_shot(part, SOURCE, seed=6)
    )
    return make.write_video(folder / "tripod-pan-cut.mp4", frames, fps=FPS, sound=make.Tone())


def pan_only(folder: Path, count: int) -> Path:
    return make.write_video(folder / "pan.mp4", make.slow_pan(count, SOURCE, step=11, seed=7), fps=FPS)


def main() -> None:
    weights = weights_dir()
    rows, compare = [], []
    engines: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        folder = Path(tmp)
        clip = tripod_pan_cut(folder)
        frames_total = 3 * FPS * SECONDS_PER_PART
        for side in SIDES:
            for round_index in range(ROUNDS):
                cache = ResultCache(folder / f"cache-{side}-{round_index}")
                photos = StylizeService(cache, weights_dir=weights, max_side=side, engine="auto")
                clips = ClipService(photos, max_side=side)
                photos.engine("hayao").wait_ready(900)  # the engine the app serves with, settled
                engines.add(label(photos.stylizer("hayao")))
                photos.stylizer("hayao").stylize(Image.new("RGB", (side, side * 9 // 16)))  # warm
                started = time.perf_counter()
                first = clips.stylize(clip, "hayao")
                first_s = time.perf_counter() - started
                started = time.perf_counter()
                again = clips.stylize(clip.read_bytes(), "hayao")
                again_s = time.perf_counter() - started
                rows.append((side, round_index, first, first_s, again, again_s))
                if side == SIDES[0]:
                    compare.append(frame_throughput(folder, photos, clips, side, round_index))
                clips.close()
                photos.close()
                cache.close()
        write(rows, compare, frames_total, sorted(engines))


def frame_throughput(
    folder: Path, photos: StylizeService, clips: ClipService, side: int, round_index: int
) -> tuple[float, float]:
    """Seconds per new frame: a pan clip (every frame new) against its frames as photos."""
    count = 48
    source = pan_only(folder, count)
    with_clip = clips.stylize(source, "hayao")
    per_frame_clip = with_clip.latency_ms / 1000 / count
    stills = []
    with av.open(str(source)) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            buffer = io.BytesIO()
            frame.to_image().save(buffer, "PNG")
            path = folder / f"frame-{round_index}-{index:03d}.png"
            path.write_bytes(buffer.getvalue())
            stills.append(path)
    fresh = ResultCache(folder / f"photos-{round_index}")  # the clip's frames must not be hits here
    other = StylizeService(fresh, weights_dir=photos.weights_dir, max_side=side, engine="auto")
    other.engine("hayao").wait_ready(900)
    started = time.perf_counter()
    for path in stills:
        other.stylize(path, "hayao")
    per_frame_photos = (time.perf_counter() - started) / count
    other.close()
    fresh.close()
    return per_frame_clip, per_frame_photos


def write(rows: list, compare: list, frames_total: int, engines: list[str]) -> None:
    table_rows, summary = [], []
    for side in SIDES:
        mine = [row for row in rows if row[0] == side]
        fps = [row[2].frames / row[3] for row in mine]
        ratios = [row[5] / row[3] for row in mine]
        runs = [row[2].model_runs for row in mine]
        for _, round_index, first, first_s, again, again_s in mine:
            table_rows.append(
                (
                    f"{side} px",
                    str(round_index + 1),
                    f"{first.frames}",
                    f"{first.model_runs}",
                    ", ".join(f"{k} {v}" for k, v in sorted(first.counts.items())),
                    f"{first_s:.1f} s",
                    f"{first.frames / first_s:.1f}",
                    f"{again_s * 1000:.1f} ms ({again.kind})",
                    f"{again_s / first_s:.5f}x",
                )
            )
        summary.append(
            (
                f"frames per second, first upload, {side} px (median of {len(fps)})",
                f"{statistics.median(fps):.1f}",
                "≥ 4 at 320 px" if side == 320 else "",
            )
        )
        summary.append(
            (f"model runs for {frames_total} frames, {side} px", f"{max(runs)}", "fewer than frames")
        )
        summary.append(
            (f"the same clip again / its first upload, {side} px (worst)", f"{max(ratios):.5f}x", "≤ 0.25x")
        )
    clip_s = statistics.median(c[0] for c in compare)
    photo_s = statistics.median(c[1] for c in compare)
    summary.append(
        (
            "a new frame in a clip / the same frame sent as a photo (seconds per frame, 320 px)",
            f"{clip_s:.3f} s / {photo_s:.3f} s = {clip_s / photo_s:.2f}x",
            "",
        )
    )
    lines = [
        "# Clips through the cached service",
        "",
        f"Machine: {machine_line()} (shared). Written by `bench/bench_video.py`.",
        "",
        "The clip: 2 s on a tripod, 2 s panning, 2 s on another still scene; 24 fps, 960 x 540, "
        f"AAC sound; every round on a fresh cache. The model: `{', '.join(engines)}` (the app's "
        "`--engine auto`).",
        "",
        *table("what | measured | goal", summary),
        "",
        *table(
            "side | round | frames | model runs | frames by kind | first | fps | again | again / first",
            table_rows,
            "lrrrlrrrr",
        ),
        "",
    ]
    write_result("video.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
