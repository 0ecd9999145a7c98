"""Hostile uploads through the real app: no file and no busy machine takes the demo from others.

Not a test. Runs `app.py` as a user does and measures, through `gradio_client`, for each
kind of attack of the hardening issue (TIFF tags and strips parsed in Python, a huge
SampleFormat array, a 49 MP lossy WebP, an animated WebP on a 7000 px canvas, a 49 MP
progressive JPEG, a float deflate TIFF, 200,000 TIFF pages, millions of PNG chunks, a
padded GIF), four distinct copies uploaded at once by four clients while a fifth client
asks for an exact hit again and again:

* the exact hits' round trips (goal: at most 1 s);
* each hostile upload's answer and its round trip (goal: a clear message within 5 s);
* the growth of the app's whole process tree (the server and its decoding workers; RSS
  sampled every 50 ms) over what it held before the round (goal: at most 600 MB);

then ordinary photos uploaded while three other processes keep every core busy (goal: none
refused), and how many tracebacks the app logged for all those refusals (goal: none).

Usage: python -m bench.bench_hostile (weights as for the tests). Writes bench/results/hostile.md.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import encoded, machine_line, photo_paths, table, weights_dir, write_result
from bench.e2e.apps import Call, call, client, real_app
from tests.support.hostile_files import (
    gif_with_padding,
    multipage_tiff,
    padded,
    png_with_chunks,
    tiff_with_long_tag,
    tiff_with_sample_formats,
    tiff_with_strips,
)

EXACT_EVERY_S = 0.25
ORDINARY_PHOTOS = 16
BURNERS = 3


def progressive_jpeg() -> bytes:
    side = 7000
    ramp = np.add.outer(np.arange(side, dtype=np.uint16), np.arange(side, dtype=np.uint16)) // 55
    pixels = np.stack([ramp, ramp[::-1], ramp.T], axis=-1).astype(np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", quality=80, progressive=True)


def float_deflate_tiff() -> bytes:
    side = 7000
    values = np.add.outer(
        np.linspace(0, 1, side, dtype=np.float32), np.linspace(0, 1, side, dtype=np.float32)
    )
    return encoded(Image.fromarray(values, mode="F"), "TIFF", compression="tiff_adobe_deflate")


ATTACKS: dict[str, Callable[[], bytes]] = {
    "TIFF: XResolution of 1M rationals": lambda: tiff_with_long_tag(1_000_000),
    "TIFF: 1M one-row strips": lambda: tiff_with_strips(1_000_000),
    "TIFF: SampleFormat of 4M shorts": lambda: tiff_with_sample_formats(4_000_000),
    "TIFF: 200,000 pages": lambda: multipage_tiff(200_000),
    "TIFF: 49 MP float, deflate": float_deflate_tiff,
    "WebP: 16383 x 2990 lossy, 2.3 MB": lambda: padded(
        lambda exif: encoded(Image.new("RGB", (16383, 2990), (40, 90, 160)), "WEBP", exif=exif), 2_300_000
    ),
    "WebP: animated, 7000 px canvas, 3 MB": lambda: padded(
        lambda exif: encoded(
            Image.new("RGB", (7000, 7000), (200, 0, 0)),
            "WEBP",
            save_all=True,
            append_images=[Image.new("RGB", (7000, 7000), (0, 0, 200))],
            exif=exif,
        ),
        3_000_000,
    ),
    "JPEG: 49 MP progressive": progressive_jpeg,
    "PNG: 2.5M chunks": lambda: png_with_chunks(2_500_000),
    "GIF: 8 MB of padding": lambda: gif_with_padding(8_000_000),
}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / 1024


class PeakSampler:
    """The peak of `tree_rss_mb(pid)` while running, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(self.pid))


def attack_round(url: str, pid: int, hits_photo: Path, files: list[Path]) -> dict[str, object]:
    visitor = client(url)
    attackers = [client(url) for _ in files]
    answers: list[Call] = [Call(label="", sent=0.0)] * len(files)
    hits: list[Call] = []
    before = tree_rss_mb(pid)

    def attack(index: int) -> None:
        answers[index] = call(attackers[index], files[index], f"hostile#{index}")

    threads = [threading.Thread(target=attack, args=(index,)) for index in range(len(files))]
    with PeakSampler(pid) as peak:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            hits.append(call(visitor, hits_photo, "exact"))
            time.sleep(EXACT_EVERY_S)
        for thread in threads:
            thread.join()
    return {"answers": answers, "hits": hits, "grown": peak.peak - before}


def ordinary_under_load(url: str, photos: list[Path]) -> list[Call]:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BURNERS)]
    try:
        visitor = client(url)
        return [call(visitor, path, "ordinary") for path in photos]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def main() -> None:
    weights = weights_dir()
    rounds: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_hostile_") as tmp:
        work = Path(tmp)
        photo = photo_paths()[0]
        with real_app(work, weights) as app:
            call(client(app.url), photo, "warm")  # the visitor's photo is cached: exact hits
            sizes = {}
            for name, make in ATTACKS.items():
                data = make()
                sizes[name] = len(data)
                copies = []
                for index in range(4):  # four distinct files: no exact hit among them
                    path = work / f"attack-{len(rounds)}-{index}.bin"
                    path.write_bytes(data + bytes([index]) * (index + 1))
                    copies.append(path)
                rounds[name] = attack_round(app.url, app.process.pid, photo, copies)
                print(name, "done", flush=True)
            ordinary = ordinary_under_load(app.url, photo_paths()[1 : 1 + ORDINARY_PHOTOS])
            log = app.log_path.read_text(errors="replace")
    write(rounds, sizes, ordinary, log)


def write(
    rounds: dict[str, dict[str, object]], sizes: dict[str, int], ordinary: list[Call], log: str
) -> None:
    rows, worst_hit, worst_answer, worst_growth = [], 0.0, 0.0, 0.0
    for name, found in rounds.items():
        answers: list[Call] = found["answers"]  # type: ignore[assignment]
        hits = [c.ms for c in found["hits"] if not c.error]  # type: ignore[attr-defined]
        failed_hits = sum(1 for c in found["hits"] if c.error)  # type: ignore[attr-defined]
        slowest = max(c.ms for c in answers)
        said = {(c.error.split(":", 1)[-1].strip() if c.error else c.badge)[:70] for c in answers}
        worst_hit = max([worst_hit, *hits])
        worst_answer = max(worst_answer, slowest)
        worst_growth = max(worst_growth, float(found["grown"]))  # type: ignore[arg-type]
        rows.append(
            (
                name,
                f"{sizes[name] / 2**20:.1f} MB",
                "; ".join(sorted(said)),
                f"{slowest / 1000:.2f} s",
                f"{statistics.median(hits):.0f} / {max(hits):.0f} ms"
                + (f" ({failed_hits} failed)" if failed_hits else ""),
                f"{float(found['grown']):+.0f} MB",  # type: ignore[arg-type]
            )
        )
    refused = [c for c in ordinary if c.error]
    tracebacks = log.count("Traceback")
    summary = [
        (
            "another client's exact hit while 4 hostile files are in flight (worst of all rounds)",
            f"{worst_hit:.0f} ms",
            "≤ 1 s",
        ),
        ("slowest answer to a hostile file", f"{worst_answer / 1000:.2f} s", "≤ 5 s, a clear message"),
        ("growth of the app's process tree (worst round)", f"{worst_growth:+.0f} MB", "≤ 600 MB"),
        (
            f"ordinary photos refused while {BURNERS} processes keep the CPU busy",
            f"{len(refused)} of {len(ordinary)}",
            "0",
        ),
        ("tracebacks in the app's log for all those refusals", str(tracebacks), "0"),
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
        "## Each attack: four copies in flight at once",
        "",
        *table(
            "attack | file | answer | slowest answer | exact hits meanwhile (median / max) | tree growth",
            rows,
            "lrllrr",
        ),
        "",
        "Ordinary photos under load: "
        + ", ".join(f"{c.ms / 1000:.1f} s" for c in ordinary)
        + (f"; refused: {'; '.join(c.error for c in refused)}" if refused else ""),
        "",
    ]
    write_result("hostile.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
