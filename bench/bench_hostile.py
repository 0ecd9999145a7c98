"""Hostile uploads through the real app: they must cost milliseconds, not other users' time.

Not a test. Runs `app.py` as a user does and measures, through `gradio_client`:

* an exact hit for one visitor while four other visitors upload hostile multi-page TIFFs
  (40,000 pages, 5 MB; 200,000 pages, 23 MB), next to the same exact hit with nothing else
  going on (goal: under 1 s);
* what each hostile upload costs until its answer (a clear error, or a result);
* the app process's peak memory (VmHWM) during the miss of a square photo (the model's
  largest working set at the default side: every upload fits within 768 x 768), then the
  peak while each of these is answered (the peak restarted before each): a 7000 x 7000
  16-bit PNG of 100 KB, a 5000 x 5000 16-bit PNG that passes the expansion limit (so it is
  decoded and stylized), a PNG with a 24 MB EXIF block (goal: at most 300 MB over the
  model's working set).

Usage: python -m bench.bench_hostile (weights as for the tests). Writes bench/results/hostile.md.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import machine_line, photo_paths, table, weights_dir, write_result
from bench.e2e.apps import Call, call, client, real_app
from tests.support.hostile_files import exif_with_description, multipage_tiff

EXACT_REPEATS = 15


def _vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory since it started, or since `_reset_peak`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak(pid: int) -> None:
    """Start the peak over from the current resident memory (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "tiff_40k_pages": multipage_tiff(40_000),
        "tiff_200k_pages": multipage_tiff(200_000),
    }
    deep = np.zeros((7000, 7000), dtype=np.uint16)
    deep[::97, :] = 65535
    paths = {}
    for name, data in out.items():
        paths[name] = folder / f"{name}.tif"
        paths[name].write_bytes(data)
    paths["png16_7000px_small"] = folder / "png16_7000px_small.png"
    Image.fromarray(deep).save(paths["png16_7000px_small"])
    side = 5000
    rng = np.random.default_rng(0)
    values = (np.add.outer(np.arange(side), np.arange(side)) * 6 + rng.integers(0, 4, (side, side))).astype(
        np.uint16
    )
    paths["png16_5000px_allowed"] = folder / "png16_5000px_allowed.png"
    Image.fromarray(values).save(paths["png16_5000px_allowed"])
    paths["png_24mb_exif"] = folder / "png_24mb_exif.png"
    Image.new("RGB", (640, 480), (120, 30, 200)).save(
        paths["png_24mb_exif"], exif=exif_with_description(24_000_000)
    )
    return paths


def exact_hits(app_client, photo: Path, repeats: int) -> list[Call]:
    return [call(app_client, photo, "exact") for _ in range(repeats)]


def main() -> None:
    weights = weights_dir()
    with tempfile.TemporaryDirectory(prefix="bench_hostile_") as tmp:
        work = Path(tmp)
        hostile = files(work / "uploads")
        # A square photo fits the model's largest input (768 x 768): its miss is the largest
        # working set any upload can ask of the model, the baseline of the memory goal.
        photo = work / "square.jpg"
        Image.open(photo_paths()[0]).convert("RGB").resize((1000, 1000)).save(photo, quality=90)
        with real_app(work, weights) as app:
            visitor = client(app.url)
            first = call(visitor, photo, "miss")
            baseline_mb = _vm_hwm_mb(app.process.pid)
            quiet = exact_hits(visitor, photo, EXACT_REPEATS)

            results: dict[str, Call] = {}
            attackers = [client(app.url) for _ in range(4)]
            names = ["tiff_40k_pages", "tiff_200k_pages", "tiff_40k_pages", "tiff_200k_pages"]

            def attack(index: int) -> None:
                results[f"{names[index]}#{index}"] = call(
                    attackers[index], hostile[names[index]], names[index]
                )

            threads = [threading.Thread(target=attack, args=(i,)) for i in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(0.2)  # the hostile uploads are on their way
            busy = exact_hits(visitor, photo, EXACT_REPEATS)
            for thread in threads:
                thread.join()

            memory = {}  # each upload's own peak, over the peak of the first miss
            for name in ("png16_7000px_small", "png16_5000px_allowed", "png_24mb_exif"):
                _reset_peak(app.process.pid)
                results[name] = call(client(app.url), hostile[name], name)
                memory[name] = _vm_hwm_mb(app.process.pid) - baseline_mb
        sizes = {name: path.stat().st_size for name, path in hostile.items()}  # before the folder goes
    write(first, quiet, busy, results, memory, baseline_mb, sizes)


def write(
    first: Call,
    quiet: list[Call],
    busy: list[Call],
    results: dict[str, Call],
    memory: dict[str, float],
    baseline_mb: float,
    sizes: dict[str, int],
) -> None:
    q = [c.ms for c in quiet if not c.error]
    b = [c.ms for c in busy if not c.error]
    badge = [float(c.info.get("latency_ms", 0)) for c in busy if not c.error]
    summary = [
        (
            "exact hit round trip while 4 hostile TIFFs are in flight (median, max)",
            f"{statistics.median(b):.0f} ms, {max(b):.0f} ms",
            "< 1 s",
        ),
        ("same, nothing else going on (median)", f"{statistics.median(q):.0f} ms", ""),
        (
            "the badge's time of those hits (median, max)",
            f"{statistics.median(badge):.1f} ms, {max(badge):.1f} ms",
            "",
        ),
        *(
            (
                f"peak while `{name}` is answered, over the peak of a miss ({baseline_mb:.0f} MB)",
                f"{grown:+.0f} MB",
                "≤ 300 MB",
            )
            for name, grown in memory.items()
        ),
    ]
    uploads = [
        (
            name,
            f"{sizes[name.split('#')[0]] / 2**20:.1f} MB",
            c.error.split(":", 1)[-1].strip()[:90] if c.error else c.badge,
            f"{c.ms:.0f} ms",
        )
        for name, c in results.items()
    ]
    lines = [
        "# Hostile uploads through the app",
        "",
        f"Machine: {machine_line()} (shared). Written by `bench/bench_hostile.py`.",
        "",
        "## Summary",
        "",
        *table("what | measured | goal", summary),
        "",
        "## Each hostile upload",
        "",
        *table("upload | file | answer | round trip", uploads, "lrlr"),
        "",
        f"The first miss on the photo took {first.ms / 1000:.2f} s.",
        "",
    ]
    write_result("hostile.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
