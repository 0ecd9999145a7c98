"""Runs the near-duplicate contract (`cache_store.contract`) the way the service meets it.

Each photo is "uploaded" as a JPEG and stored as the service stores a miss: fingerprinted
from a reduced preview decode, keyed, and calibrated on the upload fitted to the
calibration size. Every edit of every photo is then looked up in the cache of all photos,
through the same preview decode; the answer is compared with what the contract expects.
The tests (`tests/cache/test_contract.py`) and the benchmark (`bench/bench_cache.py`) both
run it, so they check one promise the same way.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from animegan.intake import open_image, open_preview
from cache_store import PREVIEW_SIDE, Fingerprint, ResultCache
from cache_store.calibration import CALIBRATION_SIDE
from cache_store.contract import MUST_HIT, MUST_MISS, ChangeDetector, Edit, encoded

NS = "contract|hayao|test|fp32|side768|2|png"
Expected = Literal["hit", "miss", "either"]


@dataclass(frozen=True)
class Case:
    """One edit of one photo, what the contract expects of it and what the cache served."""

    photo: str
    edit: str
    group: str
    expected: Expected
    served: str | None  # the photo whose result was served, None for a miss
    distance: int | None

    @property
    def correct(self) -> bool:
        if self.expected == "hit":
            return self.served == self.photo
        if self.expected == "miss":
            return self.served is None
        return self.served in (None, self.photo)

    @property
    def false_hit(self) -> bool:
        """Something was served that the upload does not show."""
        return self.served is not None and (self.served != self.photo or self.expected == "miss")


def upload_of(image: Image.Image) -> bytes:
    """A photo as a visitor uploads it: a JPEG straight from the camera or phone."""
    return encoded(image.convert("RGB"), "JPEG", quality=95)


def query(upload: Image.Image | bytes) -> Fingerprint:
    """The service's look-up fingerprint: a reduced, upright decode (`open_preview`)."""
    preview = open_preview(upload, min_side=PREVIEW_SIDE)
    return Fingerprint.of(preview.image, exact=False, box=preview.frame.box, size=preview.size)


def stored(upload: bytes) -> Fingerprint:
    """The fingerprint the service stores after a miss on `upload`: keyed and calibrated."""
    picture = open_image(upload, max_side=CALIBRATION_SIDE).rgb
    return query(upload).keyed(picture).calibrated(picture)


def fill(cache: ResultCache, photos: Mapping[str, Image.Image]) -> dict[str, Fingerprint]:
    """Store every photo's entry (its value is its name); returns the stored fingerprints."""
    prints = {}
    for name, image in photos.items():
        prints[name] = stored(upload_of(image))
        cache.put(NS, prints[name], name.encode(), {})
    return prints


def check(
    cache: ResultCache,
    photos: Mapping[str, Image.Image],
    edits: Iterable[Edit] = (*MUST_HIT, *MUST_MISS),
    *,
    threshold: int | None = None,
) -> list[Case]:
    """Look up every edit of every photo in `cache` (filled with `fill`)."""
    names = list(photos)
    must_hit = {edit.name for edit in MUST_HIT}
    cases = []
    for index, name in enumerate(names):
        source = decoded(upload_of(photos[name]))
        donor = photos[names[(index + 1) % len(names)]]
        detector = ChangeDetector(source)
        for edit in edits:
            upload = edit.apply(source, donor)
            if edit.name in must_hit:
                expected: Expected = "hit"
            else:
                expected = "miss" if detector.changed(decoded(upload)) else "either"
            hit = cache.lookup(NS, query(upload), threshold=threshold)
            served = None if hit is None else hit.value.decode()
            cases.append(
                Case(name, edit.name, edit.group, expected, served, None if hit is None else hit.distance)
            )
    return cases


def decoded(upload: Image.Image | bytes) -> Image.Image:
    """What a viewer shows of an upload: decoded, upright, RGB, at full size."""
    if isinstance(upload, Image.Image):
        return upload.convert("RGB")
    return open_image(upload).rgb


def load(paths: Iterable[Path]) -> dict[str, Image.Image]:
    return {path.name: Image.open(path).convert("RGB") for path in paths}


def summary(cases: list[Case]) -> dict[str, float | int]:
    hits = [case for case in cases if case.expected == "hit"]
    misses = [case for case in cases if case.expected == "miss"]
    return {
        "must_hit": len(hits),
        "recall": sum(case.correct for case in hits) / max(len(hits), 1),
        "must_miss": len(misses),
        "false_hits": sum(case.false_hit for case in cases),
        "unchanged": len(cases) - len(hits) - len(misses),
    }


def as_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class Curve:
    """Per threshold, the share of must-hit uploads served their own photo and the share of
    the others served anything wrong, with verification and with pHash alone."""

    thresholds: list[int]
    recall: list[float]
    false_hits: list[float]
    phash_recall: list[float]
    phash_false_hits: list[float]


def curves(
    photos: Mapping[str, Image.Image], prints: Mapping[str, Fingerprint], thresholds: list[int]
) -> Curve:
    """Every contract edit of every photo, judged at each threshold as `ResultCache.lookup`
    judges it (the nearest candidate that verifies; pHash only: the nearest candidate)."""
    from cache_store.result_cache import FUZZY_CANDIDATES
    from cache_store.verify import mismatch

    names = list(prints)
    hashes = np.array([prints[name].phash for name in names], dtype=np.uint64)
    rows = {name: _Row(fp) for name, fp in prints.items()}
    must_hit = {edit.name for edit in MUST_HIT}
    judged = []  # (expected, own photo, [(distance, name, verified)] nearest first)
    for index, name in enumerate(names):
        source = decoded(upload_of(photos[name]))
        donor = photos[names[(index + 1) % len(names)]]
        detector = ChangeDetector(source)
        for edit in (*MUST_HIT, *MUST_MISS):
            upload = edit.apply(source, donor)
            expected = (
                "hit"
                if edit.name in must_hit
                else ("miss" if detector.changed(decoded(upload)) else "either")
            )
            fp = query(upload)
            distances = np.bitwise_count(hashes ^ np.uint64(fp.phash))
            near = [
                (int(distances[i]), names[i])
                for i in np.argsort(distances, kind="stable")
                if distances[i] <= max(thresholds)
            ]
            judged.append((expected, name, [(d, n, mismatch(fp, rows[n]) is None) for d, n in near]))
    out = Curve(thresholds, [], [], [], [])
    for t in thresholds:
        counts = {"hit": 0, "good": 0, "bad": 0, "phash_good": 0, "phash_bad": 0, "judged": 0}
        for expected, own, near in judged:
            within = [(d, n, ok) for d, n, ok in near if d <= t]
            served = next((n for d, n, ok in within[:FUZZY_CANDIDATES] if ok), None)
            loose = within[0][1] if within else None
            if expected == "hit":
                counts["hit"] += 1
                counts["good"] += served == own
                counts["phash_good"] += loose == own
            counts["judged"] += 1
            counts["bad"] += served is not None and (served != own or expected == "miss")
            counts["phash_bad"] += loose is not None and (loose != own or expected == "miss")
        out.recall.append(counts["good"] / counts["hit"])
        out.phash_recall.append(counts["phash_good"] / counts["hit"])
        out.false_hits.append(counts["bad"] / counts["judged"])
        out.phash_false_hits.append(counts["phash_bad"] / counts["judged"])
    return out


class _Row:
    """A stored row as the verifier sees it."""

    def __init__(self, fp: Fingerprint) -> None:
        self.signature = fp.signature + (fp.tolerances or b"")
        self.width, self.height, self.has_alpha = fp.width, fp.height, fp.has_alpha
