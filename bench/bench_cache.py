"""Benchmark of cache_store: hit latencies, pHash scan speed, recall and false hits.

Not a test. One run (about 3 minutes on a 2-core box) writes bench/results/cache.md and the
PNG plots next to it:

* exact-hit latency of the raw fast path for a 1 MP JPEG upload;
* fuzzy-hit latency at 100k entries for a re-encoded copy of it: decode + fit (the
  service's own intake) + fingerprint + lookup (scan + verify + read);
* pHash scan time at 10k / 100k / 1M rows next to a seed-style baseline measured in the
  same run (rows read from SQLite, compared one by one with `imagehash.hex_to_hash`);
* recall and false hits per transform and per threshold over the 40 project photos, with
  and without verification, and the verification margins that justify its tolerances.

Usage: .venv/bin/python bench/bench_cache.py   (ANIMEGAN_PHOTOS_DIR overrides the photos)
"""

from __future__ import annotations

import io
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import matplotlib
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from animegan.intake import DEFAULT_MAX_SIDE, open_image  # noqa: E402
from cache_store import DEFAULT_THRESHOLD, Fingerprint, ResultCache  # noqa: E402
from cache_store.hamming import HammingIndex  # noqa: E402
from cache_store.result_cache import FUZZY_CANDIDATES  # noqa: E402
from cache_store.verify import TOLERANCES, measures, mismatch  # noqa: E402

RESULTS = REPO / "bench" / "results"
PHOTOS = Path(os.environ.get("ANIMEGAN_PHOTOS_DIR") or REPO.parent / "shared" / "photos")
NS = "bench|style|weights|fp32|side768|v1|png"
FILL = 100_000
SCAN_SIZES = (10_000, 100_000, 1_000_000)
THRESHOLDS = list(range(0, 25))
Variant = Callable[[Image.Image], Image.Image]


# -- helpers ------------------------------------------------------------------------------


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds per call."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples):.3f} ms (p95 {np.percentile(samples, 95):.3f})"


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def reencode(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def fitted(image: Image.Image, side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """What the service fingerprints: its own intake's fit."""
    return open_image(image).fit(side).rgb


def scaled(factor: float) -> Variant:
    return lambda im: im.resize((round(im.width * factor), round(im.height * factor)), Image.Resampling.LANCZOS)


def brightness(factor: float) -> Variant:
    return lambda im: ImageEnhance.Brightness(im).enhance(factor)


def synthetic(rng: np.random.Generator) -> Fingerprint:
    """A filler entry: random pHash and signature (the store keeps nothing else)."""
    return Fingerprint(
        pixel_sha=rng.bytes(32).hex(),
        phash=int(rng.integers(0, 2**64, dtype=np.uint64)),
        signature=rng.bytes(384),
        width=768,
        height=512,
        has_alpha=False,
        raw_sha=rng.bytes(32).hex(),
    )


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores (shared with other jobs; load average at start {load}), "
        f"Python {platform.python_version()}, numpy {np.__version__}, SQLite {sqlite3.sqlite_version}"
    )


# -- 1. exact and fuzzy hits ----------------------------------------------------------------


def hit_latencies(workdir: Path, photos: dict[str, Image.Image]) -> dict:
    source = photos["scene_bryandlee_1.jpg"]
    megapixel = source.resize((1224, 816), Image.Resampling.LANCZOS)  # 1.0 MP
    upload = jpeg(megapixel, 90)
    reupload = jpeg(megapixel, 75)  # the same photo, re-encoded: a fuzzy hit
    output = io.BytesIO()
    fitted(megapixel).save(output, "PNG", compress_level=3)  # stand-in for the styled result
    out = {"upload_bytes": len(upload), "value_bytes": output.tell()}

    cache = ResultCache(workdir / "hits", size_limit=1 << 31)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(FILL - 1):
        cache.put(NS, synthetic(rng), b"x" * 64, {"width": 768, "height": 512})
    out["put_us"] = (time.perf_counter() - started) / (FILL - 1) * 1e6
    raw_sha = Fingerprint.raw_key(upload)
    cache.put(NS, Fingerprint.of(fitted(megapixel), raw_sha=raw_sha), output.getvalue(), {"width": 768})
    cache.close()

    started = time.perf_counter()  # a fresh process's view: integrity check, orphan sweep
    cache = ResultCache(workdir / "hits", size_limit=1 << 31)
    out["open_ms"] = (time.perf_counter() - started) * 1000
    out["db_mib"] = (workdir / "hits" / "cache.db").stat().st_size / 2**20
    out["exact"] = timed(lambda: cache.lookup_raw(NS, Fingerprint.raw_key(upload)), 300)
    out["raw_sha"] = timed(lambda: Fingerprint.raw_key(upload), 300)
    assert cache.lookup_raw(NS, raw_sha).kind == "exact"

    query = Fingerprint.of(fitted(open_image(reupload).rgb))
    out["index_load"] = timed(lambda: cache.lookup(NS, query), 1)  # first lookup loads 100k rows
    assert cache.lookup(NS, query).kind == "fuzzy"
    out["decode_fit"] = timed(lambda: open_image(reupload).fit(DEFAULT_MAX_SIDE), 30)
    view = open_image(reupload).fit(DEFAULT_MAX_SIDE).rgb
    out["fingerprint"] = timed(lambda: Fingerprint.of(view), 30)
    out["lookup"] = timed(lambda: cache.lookup(NS, query), 100)

    def whole() -> None:
        hit = cache.lookup(NS, Fingerprint.of(open_image(reupload).fit(DEFAULT_MAX_SIDE).rgb))
        assert hit is not None and hit.kind == "fuzzy"

    out["fuzzy"] = timed(whole, 30)
    out["own_share"] = timed(lambda: cache.lookup(NS, Fingerprint.of(view)), 30)
    out["stats"] = cache.stats()
    cache.close()
    return out


# -- 2. scan vs the seed-style baseline -------------------------------------------------------


def scans(workdir: Path) -> dict[int, dict[str, float]]:
    rng = np.random.default_rng(1)
    queries = rng.integers(0, 2**64, size=50, dtype=np.uint64)
    out = {}
    for size in SCAN_SIZES:
        hashes = rng.integers(0, 2**64, size=size, dtype=np.uint64)
        index = HammingIndex()
        index.extend(np.arange(1, size + 1, dtype=np.int64), hashes)
        ours = [timed(lambda q=q: index.nearest(int(q), DEFAULT_THRESHOLD, FUZZY_CANDIDATES), 1)[0] for q in queries]

        db = sqlite3.connect(workdir / f"seed_{size}.db")
        db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, phash TEXT)")
        db.executemany("INSERT INTO entries (phash) VALUES (?)", ((f"{int(h):016x}",) for h in hashes))
        db.commit()
        target = imagehash.hex_to_hash(f"{int(queries[0]):016x}")

        def seed_style() -> list[int]:
            near = []
            for row_id, text in db.execute("SELECT id, phash FROM entries"):
                if target - imagehash.hex_to_hash(text) <= DEFAULT_THRESHOLD:
                    near.append(row_id)
            return near

        baseline = timed(seed_style, 3 if size <= 10_000 else 1)
        db.close()
        out[size] = {"ours": statistics.median(ours), "ours_p95": float(np.percentile(ours, 95)),
                     "baseline": statistics.median(baseline)}
    return out


# -- 3. recall and false hits per transform and threshold ------------------------------------

MUST_HIT: dict[str, Variant] = {
    "JPEG q40": lambda im: reencode(im, "JPEG", quality=40),
    "JPEG q60": lambda im: reencode(im, "JPEG", quality=60),
    "JPEG q90": lambda im: reencode(im, "JPEG", quality=90),
    "WebP q80": lambda im: reencode(im, "WEBP", quality=80),
    "PNG": lambda im: reencode(im, "PNG", compress_level=1),
    "resize 0.5x": scaled(0.5),
    "resize 0.75x": scaled(0.75),
    "resize 1.5x": scaled(1.5),
    "resize 2x": scaled(2.0),
    "brightness +5%": brightness(1.05),
    "brightness -5%": brightness(0.95),
    "0.5x + JPEG q60": lambda im: reencode(scaled(0.5)(im), "JPEG", quality=60),
}
MUST_MISS: dict[str, Variant] = {
    "greyscale": lambda im: im.convert("L").convert("RGB"),
    "tint (15% orange)": lambda im: Image.blend(im, Image.new("RGB", im.size, (255, 140, 0)), 0.15),
    "mirrored": ImageOps.mirror,
    "crop 10% (one side)": lambda im: im.crop((0, 0, round(im.width * 0.9), im.height)),
    "crop 10% (centred)": lambda im: im.crop(
        (round(im.width * 0.05), round(im.height * 0.05), round(im.width * 0.95), round(im.height * 0.95))
    ),
    "brightness +40%": brightness(1.4),
}
OTHER = "other photos"


def recall(workdir: Path, photos: dict[str, Image.Image]) -> dict:
    names = sorted(photos)
    base = {name: fitted(photos[name]) for name in names}
    prints = {name: Fingerprint.of(image) for name, image in base.items()}
    halves = {0: names[0::2], 1: names[1::2]}
    cache = ResultCache(workdir / "recall", threshold=max(THRESHOLDS))
    for name in names:
        cache.put(NS, prints[name], name.encode(), {})
        cache.put(f"{NS}|half{names.index(name) % 2}", prints[name], name.encode(), {})

    queries: dict[str, list[tuple[str, Fingerprint]]] = {}
    for label, variant in {**MUST_HIT, **MUST_MISS}.items():
        queries[label] = [(name, Fingerprint.of(fitted(variant(base[name])))) for name in names]
    # raw resizes, for a caller that fingerprints uploads at full size
    raw_cache = ResultCache(workdir / "recall_raw", threshold=max(THRESHOLDS))
    for name in names:
        raw_cache.put(NS, Fingerprint.of(photos[name]), name.encode(), {})
    raw_queries = {
        f"raw {factor}x (no fit)": [(name, Fingerprint.of(scaled(factor)(photos[name]))) for name in names]
        for factor in (0.5, 2.0)
    }

    curves: dict[str, dict[str, list[float]]] = {}
    distances: dict[str, list[int]] = {}
    for label, items in [*queries.items(), *raw_queries.items(), (OTHER, None)]:
        must_hit = label in MUST_HIT or label.startswith("raw")
        good, false, phash_false = [], [], []
        for t in THRESHOLDS:
            hits = wrong = loose = 0
            if label == OTHER:  # each photo against the half of the store without it
                for i, name in enumerate(names):
                    found = cache.lookup(f"{NS}|half{1 - i % 2}", prints[name], threshold=t)
                    wrong += found is not None
                    loose += any(_bits(prints[name], prints[o]) <= t for o in halves[1 - i % 2])
                total = len(names)
            else:
                store = raw_cache if label.startswith("raw") else cache
                for name, fp in items:
                    found = store.lookup(NS, fp, threshold=t)
                    if must_hit and found is not None and found.value == name.encode():
                        hits += 1
                    elif found is not None:
                        wrong += 1
                    nearest = min(names, key=lambda o: _bits(fp, prints[o]))
                    if _bits(fp, prints[nearest]) <= t and (not must_hit or nearest != name):
                        loose += 1
                total = len(items)
            good.append(hits / total)
            false.append(wrong / total)
            phash_false.append(loose / total)
        curves[label] = {"recall": good, "false": false, "phash_false": phash_false}
        if items is not None:
            distances[label] = [_bits(fp, prints[name]) for name, fp in items]
    cache.close()
    raw_cache.close()
    agreeing = sum(mismatch(prints[a], prints[b]) is None for a in names for b in names if a != b)

    margins = {}
    for label, items in queries.items():
        found = [measures(fp, prints[name]) for name, fp in items]
        margins[label] = {
            "worst": {k: (max if label in MUST_HIT else min)(m[k] for m in found) for k in TOLERANCES},
            "caught_by": {},
        }
        if label in MUST_MISS:
            for name, fp in items:
                reason = mismatch(fp, prints[name]) or "pHash only"
                margins[label]["caught_by"][reason] = margins[label]["caught_by"].get(reason, 0) + 1
    return {"curves": curves, "distances": distances, "margins": margins, "photos": len(names), "agreeing": agreeing}


def _bits(a: Fingerprint, b: Fingerprint) -> int:
    return bin(a.phash ^ b.phash).count("1")


# -- report ---------------------------------------------------------------------------------


def plot(scan: dict, rec: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = list(scan)
    ax.loglog(sizes, [scan[s]["ours"] for s in sizes], "o-", label="numpy XOR + popcount (cache_store)")
    ax.loglog(sizes, [scan[s]["baseline"] for s in sizes], "s--", label="SQLite rows + imagehash.hex_to_hash")
    ax.set_xlabel("entries")
    ax.set_ylabel("scan time (ms)")
    ax.set_title("pHash nearest-neighbour scan")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cache_scan.png", dpi=120)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.set_prop_cycle(color=plt.cm.tab20.colors)
    for label, curve in rec["curves"].items():
        if label in MUST_HIT or label.startswith("raw"):
            left.plot(THRESHOLDS, [100 * r for r in curve["recall"]], label=label)
    left.axvline(DEFAULT_THRESHOLD, color="k", linestyle=":", label=f"default ({DEFAULT_THRESHOLD})")
    left.set_xlabel("pHash threshold (bits)")
    left.set_ylabel("recall (%)")
    left.set_title("must-hit variants served their own photo")
    left.legend(fontsize=7)
    for label, curve in rec["curves"].items():
        if label in MUST_MISS or label == OTHER:
            right.plot(THRESHOLDS, [100 * r for r in curve["phash_false"]], "--", label=f"{label} (pHash only)")
    worst = np.max([curve["false"] for curve in rec["curves"].values()], axis=0)
    right.plot(THRESHOLDS, 100 * worst, "k-", linewidth=2.5, label="any variant, verified (cache_store)")
    right.axvline(DEFAULT_THRESHOLD, color="k", linestyle=":")
    right.set_xlabel("pHash threshold (bits)")
    right.set_ylabel("false hits (%)")
    right.set_title("must-miss variants served something")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "cache_recall.png", dpi=120)
    plt.close(fig)


def report(info: str, hits: dict, scan: dict, rec: dict, seconds: float) -> str:
    t = DEFAULT_THRESHOLD
    curves = rec["curves"]
    hit_labels = [label for label in curves if label in MUST_HIT or label.startswith("raw")]
    miss_labels = [label for label in curves if label not in hit_labels]
    max_hit_bits = max(max(rec["distances"][label]) for label in hit_labels)
    full_from = next(i for i in THRESHOLDS if all(curves[label]["recall"][i] == 1.0 for label in hit_labels))
    false_any = max(max(curve["false"]) for curve in curves.values())
    phash_false_at_t = {label: curves[label]["phash_false"][t] for label in miss_labels}
    lines = [
        "# cache_store benchmark",
        "",
        f"Machine: {info}. Run time {seconds:.0f} s. Written by `bench/bench_cache.py`; "
        "numbers move by tens of percent with the load of the shared box, so compare ratios "
        "measured in the same run.",
        "",
        "## Latency",
        "",
        "| path | median (p95) | goal |",
        "|---|---|---|",
        f"| exact hit, raw fast path, 1 MP JPEG ({hits['upload_bytes'] // 1024} KiB upload, "
        f"{hits['value_bytes'] // 1024} KiB value): sha256 + lookup_raw | {summary(hits['exact'])} | <= 3 ms |",
        f"| of which sha256 of the upload | {summary(hits['raw_sha'])} | |",
        f"| fuzzy hit at {FILL // 1000}k entries, JPEG q75 re-upload: decode + fit to "
        f"{DEFAULT_MAX_SIDE} px + fingerprint + lookup | {summary(hits['fuzzy'])} | <= 15 ms |",
        f"| of which decode + fit (`animegan.intake`, the caller's step) | {summary(hits['decode_fit'])} | |",
        f"| of which `Fingerprint.of` (pixel sha256, pHash, signature) | {summary(hits['fingerprint'])} | |",
        f"| of which `lookup` (sync, exact probes, scan, verify, read) | {summary(hits['lookup'])} | |",
        f"| cache_store's share: `Fingerprint.of` + `lookup` | {summary(hits['own_share'])} | |",
        f"| first fuzzy lookup of a process: loads the {FILL // 1000}k-row index | "
        f"{hits['index_load'][0]:.1f} ms | once |",
        f"| `put` while filling (two SQLite transactions) | {hits['put_us']:.0f} us per entry | |",
        f"| opening the {FILL // 1000}k-entry store ({hits['db_mib']:.0f} MiB SQLite file): "
        f"integrity check + orphan sweep | {hits['open_ms']:.0f} ms | once |",
        "",
        f"The fuzzy path is dominated by the caller's decode + fit "
        f"({statistics.median(hits['decode_fit']):.0f} ms: Pillow decodes the 1 MP JPEG, then "
        f"LANCZOS-resizes it to {DEFAULT_MAX_SIDE} px); cache_store's own share, fingerprint + "
        f"lookup, is {statistics.median(hits['own_share']):.1f} ms, of which the lookup at "
        f"{FILL // 1000}k entries is {statistics.median(hits['lookup']):.2f} ms.",
        "",
        "## pHash scan",
        "",
        f"Nearest rows within {t} bits among N random 64-bit hashes, median of 50 queries; the "
        "baseline reads the rows from SQLite and compares them one by one in Python with "
        "`imagehash.hex_to_hash` (as the seed code did), measured in the same run.",
        "",
        "| entries | cache_store (p95) | seed-style baseline | speed-up |",
        "|---|---|---|---|",
    ]
    for size, row in scan.items():
        lines.append(
            f"| {size:,} | {row['ours']:.3f} ms ({row['ours_p95']:.3f}) | {row['baseline']:,.0f} ms | "
            f"{row['baseline'] / row['ours']:,.0f}x |"
        )
    lines += [
        "",
        "Goal: <= 2 ms at 1M entries. ![scan](cache_scan.png)",
        "",
        "## Recall and false hits",
        "",
        f"{rec['photos']} project photos, each stored as the service fingerprints it (fitted to "
        f"{DEFAULT_MAX_SIDE} px); each variant is made from that copy, fitted again and looked up "
        "in the store of all photos (\"other photos\": each photo against the half of the store "
        "that does not hold it). \"raw\" rows fingerprint full-size photos and resizes without "
        "fitting. False hit = anything served for a must-miss variant, or another photo served "
        "for a must-hit one. \"pHash only\" = what a cache without verification would serve.",
        "",
        f"| variant | max pHash bits to own photo | recall at {t} | false hits at {t} | "
        f"pHash-only false hits at {t} |",
        "|---|---|---|---|---|",
    ]
    for label, curve in curves.items():
        bits = max(rec["distances"][label]) if label in rec["distances"] else "-"
        recall_at = f"{100 * curve['recall'][t]:.0f} %" if label in hit_labels else "-"
        lines.append(
            f"| {label} | {bits} | {recall_at} | {100 * curve['false'][t]:.0f} % | "
            f"{100 * curve['phash_false'][t]:.0f} % |"
        )
    lines += [
        "",
        f"Over thresholds 0..{max(THRESHOLDS)}, the worst false-hit rate with verification is "
        f"{100 * false_any:.0f} %. ![recall](cache_recall.png)",
        "",
        f"No two different photos of the {rec['photos']} pass verification at any pHash distance "
        f"({rec['agreeing']} of {rec['photos'] * (rec['photos'] - 1)} ordered pairs agree).",
        "",
        "### Verification margins",
        "",
        "Worst value of each check over the photos (largest for must-hit variants, smallest "
        "for must-miss ones) next to its tolerance; a must-miss variant is refused when any "
        "check exceeds its tolerance or its pHash is beyond the threshold.",
        "",
        "| variant | " + " | ".join(TOLERANCES) + " | refused by |",
        "|---|" + "---|" * len(TOLERANCES) + "---|",
        "| tolerance | " + " | ".join(f"{v:g}" for v in TOLERANCES.values()) + " | |",
    ]
    for label, margin in rec["margins"].items():
        caught = ", ".join(f"{k} {v}" for k, v in sorted(margin["caught_by"].items(), key=lambda kv: -kv[1]))
        lines.append(
            f"| {label} | " + " | ".join(f"{margin['worst'][k]:.3f}" for k in TOLERANCES) + f" | {caught} |"
        )
    lines += [
        "",
        "## Default threshold",
        "",
        f"`DEFAULT_THRESHOLD = {t}` bits. Every must-hit variant lies within {max_hit_bits} bits "
        f"of its own photo's pHash, so recall is 100 % from {full_from} bits on; {t} bits leaves "
        f"{t - max_hit_bits} bits of headroom for edits this set does not cover (stronger "
        "compression, combined edits), while the candidates it admits stay few enough to verify. "
        "The threshold is not what keeps wrong results out: greyscale, tinted and brightened "
        "copies hash within a few bits of the original, so a pHash-only cache would serve "
        + ", ".join(f"{label} {100 * v:.0f} %" for label, v in phash_false_at_t.items() if v)
        + f" of them at {t} bits. Verification (alpha, aspect, brightness, 16x16 luma layout, "
        f"8x8 chroma) refuses all of them: 0 false hits at every threshold up to {max(THRESHOLDS)}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    started = time.perf_counter()
    info = machine()
    photos = {p.name: Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))}
    if len(photos) < 2:
        sys.exit(f"no photos in {PHOTOS}: set ANIMEGAN_PHOTOS_DIR")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        workdir = Path(tmp)
        print("recall and false hits ...", flush=True)
        rec = recall(workdir, photos)
        print("hit latencies (fills 100k entries) ...", flush=True)
        hits = hit_latencies(workdir, photos)
        print("scans ...", flush=True)
        scan = scans(workdir)
    plot(scan, rec)
    text = report(info, hits, scan, rec, time.perf_counter() - started)
    (RESULTS / "cache.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
