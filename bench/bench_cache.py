"""Benchmark of the result cache: what a hit costs, and what the near-duplicate tier serves.

Not a test. One run (about 10 minutes on a 2-core box) writes bench/results/cache.md and
the plots next to it:

* the service's own time for an exact hit and for near-duplicate hits at 100k entries:
  a 1 MP JPEG re-encoded, and a 0.8x WebP of a 1200 px JPEG stylized before, step by
  step (read and hash, reduced decode, fingerprint, look-up, serving);
* what a miss pays for the near-duplicate tier: fingerprinting and calibration, next to
  the inference it runs beside;
* the near-duplicate contract (`cache_store.contract`) on every photo at full size: recall
  and false hits per class, and per threshold with and without verification;
* the filter that fits a near-duplicate's output to another size: time against PSNR to
  what a miss would have produced;
* the pHash scan at 10k / 100k / 1M rows next to a seed-style baseline.

Usage: python -m bench.bench_cache (weights and photos as for the tests: ../shared, or
ANIMEGAN_WEIGHTS_DIR and ANIMEGAN_PHOTOS_DIR).
"""

from __future__ import annotations

import io
import sqlite3
import statistics
import tempfile
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import imagehash
import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from animegan.intake import DEFAULT_MAX_SIDE, fitted_size, open_image, open_preview
from animegan.isolated import Upload
from bench.common import (
    RESULTS,
    encoded,
    filler_fingerprint,
    machine_line,
    photo_paths,
    table,
    timed,
    weights_dir,
    write_result,
)
from cache_store import DEFAULT_THRESHOLD, PREVIEW_SIDE, Fingerprint, ResultCache
from cache_store.hamming import HammingIndex
from cache_store.result_cache import FUZZY_CANDIDATES
from cache_store.verify import REFERENCE_SIZE
from stylize_service.service import FIT_FILTER, MAX_UPLOAD_BYTES, UPLOAD_SUBJECT, StylizeService, encode_png
from tests.support import contract_check, photo_classes

STYLE = "hayao"
FILL = 100_000
SCAN_SIZES = (10_000, 100_000, 1_000_000)
THRESHOLDS = list(range(25))


def med(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} ms"


# -- 1. what a hit costs the service ----------------------------------------------------------


def hit_latencies(workdir: Path, photo: Image.Image, other: Image.Image) -> dict:
    cache = ResultCache(workdir / "hits", size_limit=1 << 31)
    service = StylizeService(cache, weights_dir=weights_dir())
    namespace = service.namespace(service.stylizer(STYLE))
    rng = np.random.default_rng(0)
    for _ in range(FILL):
        cache.put(namespace, filler_fingerprint(rng), b"x" * 64, {})

    scale = (1e6 / (photo.width * photo.height)) ** 0.5  # one megapixel, the photo's aspect
    megapixel = encoded(
        photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS),
        "JPEG",
        quality=90,
    )
    twelve = other.resize((1200, round(1200 * other.height / other.width)), Image.Resampling.LANCZOS)
    original = encoded(twelve, "JPEG", quality=90)
    webp = encoded(
        twelve.resize((960, round(twelve.height * 0.8)), Image.Resampling.LANCZOS), "WEBP", quality=80
    )
    out: dict = {"entries": FILL}
    started = time.perf_counter()
    first = service.stylize(megapixel, STYLE)
    out["miss_ms"] = (time.perf_counter() - started) * 1000
    assert first.kind == "miss", first.kind
    assert service.stylize(original, STYLE).kind == "miss"
    cases = {
        "exact hit, 1 MP JPEG": megapixel,
        "near-duplicate, 1 MP JPEG re-encoded at q75": encoded(
            Image.open(io.BytesIO(megapixel)), "JPEG", quality=75
        ),
        "near-duplicate, 0.8x WebP of a 1200 px JPEG": webp,
    }
    out["cases"] = {}
    for index, (label, data) in enumerate(cases.items()):
        upload = workdir / f"upload-{index}"  # a file, as the app gets an upload from Gradio
        upload.write_bytes(data)
        kinds = {service.prepare(upload, STYLE).kind for _ in range(3)}
        assert kinds == {"exact" if label.startswith("exact") else "fuzzy"}, (label, kinds)
        out["cases"][label] = {
            "total": timed(lambda u=upload: service.prepare(u, STYLE, subject=UPLOAD_SUBJECT), 40),
            **_steps(service, namespace, data, upload),
        }
    out["kind"] = {label: service.prepare(data, STYLE).kind for label, data in cases.items()}
    out["calibration"] = timed(lambda: Fingerprint.of(twelve).calibrated(twelve), 5)
    out["fingerprint_miss"] = timed(lambda: open_preview(original, min_side=PREVIEW_SIDE), 10)
    cache.close()
    return out


def _steps(service: StylizeService, namespace: str, data: bytes, path: Path) -> dict:
    """The service's steps for one upload, timed one by one."""
    preview = open_preview(data, min_side=PREVIEW_SIDE)
    query = Fingerprint.of(preview.image, exact=False, box=preview.frame.box, size=preview.size)
    hit = service.cache.lookup(namespace, query)
    upload = Upload.read(path, limit=MAX_UPLOAD_BYTES, subject=UPLOAD_SUBJECT)
    steps = {
        "read + sha256 of the file": timed(
            lambda: Upload.read(path, limit=MAX_UPLOAD_BYTES, subject=UPLOAD_SUBJECT), 40
        ),
        "raw look-up": timed(lambda: service.cache.lookup_raw(namespace, upload.sha256), 40),
        "reduced decode in a worker process": timed(
            lambda: service.decoder.preview(upload, min_side=PREVIEW_SIDE), 40
        ),
        "(the same decode in this process)": timed(lambda: open_preview(data, min_side=PREVIEW_SIDE), 40),
        "fingerprint (pHash + signature)": timed(
            lambda: Fingerprint.of(preview.image, exact=False, box=preview.frame.box, size=preview.size), 40
        ),
        "look-up (scan + verify + read)": timed(lambda: service.cache.lookup(namespace, query), 40),
    }
    if hit is not None and hit.kind == "fuzzy":
        same = fitted_size(preview.size, service.max_side) == Image.open(io.BytesIO(hit.value)).size
        steps["serving" + (" (stored bytes as they are)" if same else " (resize + PNG)")] = timed(
            lambda: service._fit_hit(hit, preview.size, lambda: None), 40
        )
    return steps


# -- 2. the contract --------------------------------------------------------------------------


def contract(workdir: Path, photos: dict[str, Image.Image]) -> dict:
    with ResultCache(workdir / "contract", threshold=max(THRESHOLDS)) as cache:
        prints = contract_check.fill(cache, photos)
        cases = contract_check.check(cache, photos, threshold=DEFAULT_THRESHOLD)
    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for case in cases:
        row = groups[(case.expected if case.expected != "either" else "unchanged") + ": " + case.group]
        row["n"] += 1
        row["correct"] += case.correct
        row["false"] += case.false_hit
    curve = contract_check.curves(photos, prints, THRESHOLDS)
    return {"summary": contract_check.summary(cases), "groups": groups, "curve": curve, "photos": len(photos)}


# -- 3. fitting a near-duplicate's output to another size -------------------------------------


FILTERS = {
    name: getattr(Image.Resampling, name)
    for name in ("NEAREST", "BILINEAR", "HAMMING", "BICUBIC", "LANCZOS", "BOX")
}


def fit_filters(photos: list[Image.Image]) -> dict:
    """Resize the stored output of a photo to what an upload of another size needs, and
    compare it with the output a miss on that upload gives (the model run at that size)."""
    stylizer = StylizeService(None, weights_dir=weights_dir()).stylizer(STYLE)
    psnr: dict[str, list[float]] = defaultdict(list)
    ms: dict[str, list[float]] = defaultdict(list)
    for photo in photos:
        stored = stylizer.stylize(open_image(photo, max_side=DEFAULT_MAX_SIDE).rgb)
        for factor in (0.6, 0.8):
            upload = photo.resize(
                (round(photo.width * factor), round(photo.height * factor)), Image.Resampling.LANCZOS
            )
            truth = stylizer.stylize(open_image(upload, max_side=DEFAULT_MAX_SIDE).rgb)
            for name, resample in FILTERS.items():
                ms[name] += timed(partial(_fitted_png, stored, truth.size, resample), 3)
                psnr[name].append(_psnr(stored.resize(truth.size, resample), truth))
    return {
        name: {"ms": statistics.median(ms[name]), "psnr": statistics.median(psnr[name])} for name in FILTERS
    }


def _fitted_png(stored: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> bytes:
    return encode_png(stored.resize(size, resample))


def _psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-12)))


# -- 4. pHash scan vs the seed-style baseline ------------------------------------------------


def scans(workdir: Path) -> dict[int, dict[str, float]]:
    rng = np.random.default_rng(1)
    queries = rng.integers(0, 2**64, size=50, dtype=np.uint64)
    out = {}
    for size in SCAN_SIZES:
        hashes = rng.integers(0, 2**64, size=size, dtype=np.uint64)
        index = HammingIndex()
        index.extend(np.arange(1, size + 1, dtype=np.int64), hashes)
        ours = [
            timed(partial(index.nearest, int(q), DEFAULT_THRESHOLD, FUZZY_CANDIDATES))[0] for q in queries
        ]
        db = sqlite3.connect(workdir / f"seed_{size}.db")
        db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, phash TEXT)")
        db.executemany("INSERT INTO entries (phash) VALUES (?)", ((f"{int(h):016x}",) for h in hashes))
        db.commit()
        target = imagehash.hex_to_hash(f"{int(queries[0]):016x}")
        baseline = timed(partial(_seed_style_scan, db, target), 3 if size <= 10_000 else 1)
        db.close()
        out[size] = {"ours": statistics.median(ours), "baseline": statistics.median(baseline)}
    return out


def _seed_style_scan(db: sqlite3.Connection, target: imagehash.ImageHash) -> list[int]:
    """The seed's look-up: every row read and compared in Python."""
    return [
        i
        for i, text in db.execute("SELECT id, phash FROM entries")
        if target - imagehash.hex_to_hash(text) <= DEFAULT_THRESHOLD
    ]


# -- report -----------------------------------------------------------------------------------


def plot(scan: dict, curve: contract_check.Curve) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = list(scan)
    ax.loglog(sizes, [scan[s]["ours"] for s in sizes], "o-", label="numpy XOR + popcount (cache_store)")
    ax.loglog(sizes, [scan[s]["baseline"] for s in sizes], "s--", label="SQLite rows + imagehash.hex_to_hash")
    ax.set(xlabel="entries", ylabel="scan time (ms)", title="pHash nearest-neighbour scan")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cache_scan.png", dpi=120)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, (ours, loose, title) in zip(
        (left, right),
        (
            (curve.recall, curve.phash_recall, "must-hit uploads served their own photo (recall)"),
            (curve.false_hits, curve.phash_false_hits, "uploads served something they do not show"),
        ),
        strict=True,
    ):
        axis.plot(
            curve.thresholds,
            [100 * v for v in ours],
            "k-",
            linewidth=2.5,
            label="pHash + verification (cache_store)",
        )
        axis.plot(curve.thresholds, [100 * v for v in loose], "r--", label="pHash only")
        axis.axvline(
            DEFAULT_THRESHOLD, color="grey", linestyle=":", label=f"default ({DEFAULT_THRESHOLD} bits)"
        )
        axis.set(xlabel="pHash threshold (bits)", ylabel="%", title=title)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "cache_recall.png", dpi=120)
    plt.close(fig)


def report(hits: dict, con: dict, fits: dict, scan: dict, seconds: float) -> str:
    s, curve, t = con["summary"], con["curve"], DEFAULT_THRESHOLD
    uploads = s["must_miss"] + s["must_hit"] + s["unchanged"]
    summary = [
        (
            f"{label}, {hits['entries'] // 1000}k entries: the service's own time (median)",
            med(case["total"]),
            "≤ 8 ms" if label.startswith("near") else "≤ 3 ms",
        )
        for label, case in hits["cases"].items()
    ]
    summary += [
        (
            f"contract at full size, {con['photos']} photos, threshold {t}: false hits",
            f"{s['false_hits']} of {uploads} uploads",
            "0",
        ),
        (f"same: recall of the {s['must_hit']} must-hit uploads", f"{100 * s['recall']:.1f} %", "≥ 98 %"),
        ("stored per entry: signature + tolerances", f"{REFERENCE_SIZE:,} bytes", ""),
        (
            "reduced decode of a miss's upload for its fingerprint (1200 px JPEG)",
            med(hits["fingerprint_miss"]),
            "",
        ),
        (
            "calibration of a new entry (runs beside the inference)",
            f"{med(hits['calibration'])} (a miss: {hits['miss_ms'] / 1000:.2f} s)",
            "",
        ),
    ]
    steps = []
    for label, case in hits["cases"].items():
        steps += [
            f"**{label}** ({hits['kind'][label]}): {med(case['total'])} in all.",
            "",
            *table(
                "step | median",
                [(step, med(samples)) for step, samples in case.items() if step != "total"],
            ),
            "",
        ]
    groups = [
        (group, row["n"], f"{100 * row['correct'] / row['n']:.1f} %", row["false"])
        for group, row in sorted(con["groups"].items())
    ]
    per_threshold = [
        (
            f"{bits}{' (default)' if bits == t else ''}",
            f"{100 * curve.recall[i]:.1f} %",
            f"{100 * curve.false_hits[i]:.2f} %",
            f"{100 * curve.phash_recall[i]:.1f} %",
            f"{100 * curve.phash_false_hits[i]:.1f} %",
        )
        for i, bits in enumerate(curve.thresholds)
        if bits % 2 == 0 or bits == t
    ]
    filters = [(name, f"{row['ms']:.1f} ms", f"{row['psnr']:.1f} dB") for name, row in fits.items()]
    scan_rows = [
        (
            f"{size:,}",
            f"{row['ours']:.3f} ms",
            f"{row['baseline']:,.0f} ms",
            f"{row['baseline'] / row['ours']:,.0f}x",
        )
        for size, row in scan.items()
    ]
    lines = [
        "# Result cache benchmark",
        "",
        f"Machine: {machine_line()} (shared with other jobs). Run time {seconds / 60:.0f} min, "
        "written by `bench/bench_cache.py`. Absolute times move with the load of the shared "
        "box; compare numbers of the same run.",
        "",
        "## Summary",
        "",
        *table("what | measured | goal", summary),
        "",
        "## Where a hit's time goes",
        "",
        "Each step timed alone, median of 40 (the total is measured separately, so the steps need "
        "not add up to it exactly).",
        "",
        *steps,
        "## The near-duplicate contract",
        "",
        f"Every edit of `cache_store.contract` applied to each of {con['photos']} photos at full size "
        "(../shared's photos, the licensed photos of `tests/data/photos` and the generated ones of "
        "`tests/support/photo_classes.py`), each photo uploaded as a JPEG and stored as the service stores "
        "a miss; every edit looked up in the cache of all of them through the service's reduced "
        "decode. *Unchanged*: a must-miss edit that leaves the picture as it is (a colour edit of "
        "a greyscale photo): either answer is right.",
        "",
        *table("class | uploads | answered right | false hits", groups, "lrrr"),
        "",
        "### Per threshold",
        "",
        *table(
            "threshold (bits) | recall, verified | false hits, verified | recall, pHash only | "
            "false hits, pHash only",
            per_threshold,
            "rrrrr",
        ),
        "",
        "![recall and false hits per threshold](cache_recall.png)",
        "",
        "## Fitting a near-duplicate's output to another size",
        "",
        "The stored output (768 px) resized to what an upload of 0.6x or 0.8x needs, against the "
        "output a miss on that upload gives; time includes the PNG encode. `FIT_FILTER` is "
        f"`{FIT_FILTER.name}`.",
        "",
        *table("filter | resize + PNG | PSNR to a true miss", filters, "lrr"),
        "",
        "## pHash scan",
        "",
        f"Nearest rows within {t} bits among N random 64-bit hashes, median of 50 queries, next to "
        "the seed's SQLite + Python scan measured in the same run.",
        "",
        *table("entries | cache_store | seed-style | speed-up", scan_rows, "rrrr"),
        "",
        "![scan](cache_scan.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    started = time.perf_counter()
    photos = contract_check.load(photo_paths())
    photos.update(photo_classes.licensed())
    photos.update(photo_classes.generated())
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        workdir = Path(tmp)
        print("hit latencies (fills 100k entries) ...", flush=True)
        scenes = sorted(name for name in photos if name.startswith("scene")) or sorted(photos)
        hits = hit_latencies(workdir, photos[scenes[0]], photos[scenes[-1]])
        print("contract ...", flush=True)
        con = contract(workdir, photos)
        print("fit filters ...", flush=True)
        fits = fit_filters([photos[name] for name in sorted(photos)[::10]])
        print("scans ...", flush=True)
        scan = scans(workdir)
    plot(scan, con["curve"])
    text = report(hits, con, fits, scan, time.perf_counter() - started)
    write_result("cache.md", text)
    print(text)


if __name__ == "__main__":
    main()
