"""Two small cache-only curves for the plots, ours next to the seed-style baseline.

* look-up time vs number of entries: a query that matches nothing (the seed's worst and
  most common case: every row is read and compared in Python);
* recall and false hits vs threshold: originals of the photos are stored, then their
  re-encodings (must hit, and serve their own photo, not another) and look-alikes (must
  not hit) are looked up. No model runs: stored values are the source names.

bench/bench_cache.py (results/cache.md) measures the cache alone in more depth.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import imagehash
import numpy as np

from bench.common import filler_fingerprint, timed
from bench.e2e import workloads
from bench.e2e.seed_baseline import SEED_THRESHOLD, SeedStyleCache

NAMESPACE = "bench|curves"
T = TypeVar("T")


def _fingerprint(data: bytes, max_side: int):
    from animegan.intake import open_image
    from cache_store import Fingerprint

    return Fingerprint.of(open_image(data).fit(max_side).rgb, raw_sha=Fingerprint.raw_key(data))


def scan_time(sizes: list[int], queries: int = 30, seed: int = 1) -> dict:
    """Median ms of a non-matching look-up at each size, ours vs seed-style."""
    from cache_store import ResultCache

    rng = np.random.default_rng(seed)
    ours_ms, seed_ms = [], []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as work:
        cache = ResultCache(Path(work) / "ours", ttl=0)
        seed_cache = SeedStyleCache(Path(work) / "seed.sqlite")
        filled = 0
        for size in sizes:
            rows = []
            for _ in range(size - filled):
                fp = filler_fingerprint(rng)
                cache.put(NAMESPACE, fp, b"x" * 64, {})
                rows.append((str(imagehash.hex_to_hash(f"{fp.phash:016x}")), b"x" * 64))
            seed_cache.put_many(rows)
            filled = size
            probes = [filler_fingerprint(rng) for _ in range(queries)]  # ~32 bits from any row
            ours_ms.append(_median_ms(partial(cache.lookup, NAMESPACE), probes))
            hashes = [imagehash.hex_to_hash(f"{fp.phash:016x}") for fp in probes]
            seed_ms.append(_median_ms(seed_cache.lookup, hashes))
        cache.close()
        seed_cache.close()
    return {"sizes": sizes, "ours_ms": ours_ms, "seed_ms": seed_ms}


def _median_ms(fn: Callable[[T], object], items: list[T]) -> float:
    """Median ms of one call of `fn` per item."""
    return statistics.median(timed(partial(fn, item))[0] for item in items)


def threshold_sweep(photos: list[Path], thresholds: list[int], max_side: int) -> dict:
    """Recall of re-encodings and false hits (look-alikes, other photos) per threshold."""
    from cache_store import DEFAULT_THRESHOLD, ResultCache

    stored = workloads.requests_for(photos, {"original": workloads.REENCODINGS["original"]})
    must_hit = workloads.requests_for(
        photos, {k: v for k, v in workloads.REENCODINGS.items() if k != "original"}
    )
    lookalikes = workloads.requests_for(photos, workloads.ADVERSARIAL)
    fingerprints = {r.name: _fingerprint(r.data, max_side) for r in stored + must_hit + lookalikes}
    result: dict = {
        "thresholds": thresholds,
        "must_hit": len(must_hit),
        "must_miss": len(lookalikes),
        "ours_threshold": DEFAULT_THRESHOLD,
        "seed_threshold": SEED_THRESHOLD,
        "ours": {"recall": [], "false_hits": []},
        "seed": {"recall": [], "false_hits": []},
    }
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as work:
        cache = ResultCache(Path(work) / "ours", ttl=0)
        for r in stored:
            cache.put(NAMESPACE, fingerprints[r.name], r.source.encode(), {})
        stored_hashes = {r.source: imagehash.phash(_open(r.data)) for r in stored}
        query_hashes = {r.name: imagehash.phash(_open(r.data)) for r in must_hit + lookalikes}
        for t in thresholds:
            ours = {
                r.name: cache.lookup(NAMESPACE, fingerprints[r.name], threshold=t)
                for r in must_hit + lookalikes
            }
            seed = {
                r.name: _seed_first(query_hashes[r.name], stored_hashes, t) for r in must_hit + lookalikes
            }
            for name, answers in (
                ("ours", {k: (v.value.decode() if v else None) for k, v in ours.items()}),
                ("seed", seed),
            ):
                result[name]["recall"].append(
                    sum(answers[r.name] == r.source for r in must_hit) / len(must_hit)
                )
                result[name]["false_hits"].append(
                    sum(answers[r.name] is not None and answers[r.name] != r.source for r in must_hit)
                    + sum(answers[r.name] is not None for r in lookalikes)
                )
        cache.close()
    return result


def _open(data: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data))


def _seed_first(h: imagehash.ImageHash, stored: dict[str, imagehash.ImageHash], threshold: int) -> str | None:
    """The seed's scan: the first stored row within `threshold` bits, in insertion order."""
    for source, cached in stored.items():
        if cached - h <= threshold:
            return source
    return None
