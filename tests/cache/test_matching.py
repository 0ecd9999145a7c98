"""Which near-duplicates the fuzzy tier serves, on the 40 real project photos.

The cache holds every photo as the service fingerprints it (downscaled to 512 px). Variants
are made from that 512 px copy (fast) and fitted again, as the service would fit an upload
of that size; `test_raw_resizes_hit_without_downscaling` covers full-size resizes. Must-hit variants must find their own photo; must-miss
variants must find nothing (the cache holds all 40 photos, so no other photo may answer).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance, ImageOps

from cache_store import Fingerprint, ResultCache
from cache_store.result_cache import DEFAULT_THRESHOLD
from cache_store.verify import mismatch
from cache_support import fit, reencode
from redis_support import BACKENDS, MODULE_DB, fresh_location

NS = "style=hayao|weights=test|fp32|side512|v1|png"
Variant = Callable[[Image.Image], Image.Image]


def scaled(factor: float) -> Variant:
    return lambda im: im.resize((round(im.width * factor), round(im.height * factor)), Image.Resampling.LANCZOS)


def brightness(factor: float) -> Variant:
    return lambda im: ImageEnhance.Brightness(im).enhance(factor)


MUST_HIT: dict[str, Variant] = {
    "jpeg_q40": lambda im: reencode(im, "JPEG", quality=40),
    "jpeg_q75": lambda im: reencode(im, "JPEG", quality=75),
    "webp": lambda im: reencode(im, "WEBP", quality=80),
    "png": lambda im: reencode(im, "PNG", compress_level=1),
    "resize_0.5x": scaled(0.5),
    "resize_0.75x": scaled(0.75),
    "resize_1.5x": scaled(1.5),
    "resize_2x": scaled(2.0),
    "brightness_+5%": brightness(1.05),
    "brightness_-5%": brightness(0.95),
    "resize_0.5x_jpeg_q60": lambda im: reencode(scaled(0.5)(im), "JPEG", quality=60),
}

MUST_MISS: dict[str, Variant] = {
    "greyscale": lambda im: im.convert("L").convert("RGB"),
    "tint_orange_15%": lambda im: Image.blend(im, Image.new("RGB", im.size, (255, 140, 0)), 0.15),
    "tint_blue_channels": lambda im: Image.merge(
        "RGB", [band.point(lambda v, f=f: min(255, round(v * f))) for band, f in zip(im.split(), (0.9, 1.0, 1.12))]
    ),
    "mirrored": ImageOps.mirror,
    "crop_10%_right": lambda im: im.crop((0, 0, round(im.width * 0.9), im.height)),
    "crop_10%_centred": lambda im: im.crop(
        (round(im.width * 0.05), round(im.height * 0.05), round(im.width * 0.95), round(im.height * 0.95))
    ),
    "brightness_+40%": brightness(1.4),
}


@pytest.fixture(scope="module", params=BACKENDS)
def cache(request, tmp_path_factory: pytest.TempPathFactory, fitted: dict[str, Image.Image]) -> ResultCache:
    cache = ResultCache(fresh_location(request, tmp_path_factory.mktemp("matching"), MODULE_DB))
    for name, image in fitted.items():
        cache.put(NS, Fingerprint.of(image), name.encode(), {"name": name})
    yield cache
    cache.close()


@pytest.mark.parametrize("variant", MUST_HIT)
def test_near_duplicates_hit_their_own_photo(variant: str, cache: ResultCache, fitted) -> None:
    wrong = {}
    for name, image in fitted.items():
        hit = cache.lookup(NS, Fingerprint.of(fit(MUST_HIT[variant](image))))
        if hit is None or hit.value != name.encode():
            wrong[name] = None if hit is None else hit.value.decode()
            continue
        assert hit.kind in ("exact", "fuzzy") and hit.distance <= DEFAULT_THRESHOLD
        assert hit.source_size == fitted[name].size and hit.meta == {"name": name}
    assert not wrong, f"{variant}: {wrong}"


@pytest.mark.parametrize("variant", MUST_MISS)
def test_altered_copies_miss(variant: str, cache: ResultCache, fitted) -> None:
    served = {}
    for name, image in fitted.items():
        hit = cache.lookup(NS, Fingerprint.of(fit(MUST_MISS[variant](image))))
        if hit is not None:
            served[name] = (hit.value.decode(), hit.distance)
    assert not served, f"{variant} served: {served}"


def test_other_photos_never_verify(fitted: dict[str, Image.Image]) -> None:
    prints = {name: Fingerprint.of(image) for name, image in fitted.items()}
    agreeing = [
        (a, b)
        for a, fa in prints.items()
        for b, fb in prints.items()
        if a != b and bin(fa.phash ^ fb.phash).count("1") <= 64 and mismatch(fa, fb) is None
    ]
    assert not agreeing


def test_other_photos_miss_end_to_end(tmp_path: Path, fitted: dict[str, Image.Image]) -> None:
    faces = {name: image for name, image in fitted.items() if name.startswith("face")}
    others = {name: image for name, image in fitted.items() if name not in faces}
    with ResultCache(tmp_path, threshold=64) as cache:  # every stored photo is a candidate
        for name, image in faces.items():
            cache.put(NS, Fingerprint.of(image), name.encode(), {})
        assert all(cache.lookup(NS, Fingerprint.of(image)) is None for image in others.values())
        assert all(cache.lookup(NS, Fingerprint.of(image)) is not None for image in faces.values())


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_raw_resizes_hit_without_downscaling(factor: float, tmp_path: Path, originals) -> None:
    """The same, for a caller that fingerprints uploads at their own size."""
    sample = dict(list(originals.items())[::4])
    with ResultCache(tmp_path) as cache:
        for name, image in sample.items():
            cache.put(NS, Fingerprint.of(image), name.encode(), {})
        for name, image in sample.items():
            hit = cache.lookup(NS, Fingerprint.of(scaled(factor)(image)))
            assert hit is not None and hit.kind == "fuzzy" and hit.value == name.encode(), name
            assert hit.source_size == image.size


def test_metadata_stripped_copy_is_an_exact_hit(tmp_path: Path, photo_paths: list[Path]) -> None:
    """A JPEG with and without a comment/EXIF segment: different files, same pixels."""
    plain = photo_paths[0].read_bytes()
    assert plain[:2] == b"\xff\xd8"
    comment = b"shot on a phone, GPS 12.34 56.78"
    tagged = plain[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + plain[2:]
    decode = lambda data: Image.open(io.BytesIO(data)).convert("RGB")  # noqa: E731
    tagged_print = Fingerprint.of(fit(decode(tagged)), raw_sha=Fingerprint.raw_key(tagged))
    plain_print = Fingerprint.of(fit(decode(plain)), raw_sha=Fingerprint.raw_key(plain))
    with ResultCache(tmp_path) as cache:
        cache.put(NS, tagged_print, b"styled", {})
        assert cache.lookup_raw(NS, plain_print.raw_sha) is None
        hit = cache.lookup(NS, plain_print)
        assert hit is not None and hit.kind == "exact" and hit.distance == 0 and hit.value == b"styled"
        assert cache.lookup_raw(NS, tagged_print.raw_sha).kind == "exact"


def test_alpha_must_match(tmp_path: Path, fitted: dict[str, Image.Image]) -> None:
    image = next(iter(fitted.values()))
    with_alpha = image.copy()
    with_alpha.putalpha(255)
    with ResultCache(tmp_path) as cache:
        cache.put(NS, Fingerprint.of(image), b"opaque", {})
        assert Fingerprint.of(with_alpha).has_alpha
        assert cache.lookup(NS, Fingerprint.of(with_alpha)) is None
        cache.put(NS, Fingerprint.of(with_alpha), b"rgba", {})
        hit = cache.lookup(NS, Fingerprint.of(reencode(with_alpha, "WEBP", quality=80)))
        assert hit is not None and hit.value == b"rgba"


def test_namespaces_are_separate(tmp_path: Path, fitted: dict[str, Image.Image]) -> None:
    image = next(iter(fitted.values()))
    fp = Fingerprint.of(image, raw_sha="ab" * 32)
    with ResultCache(tmp_path) as cache:
        cache.put(NS, fp, b"hayao", {})
        other = NS.replace("weights=test", "weights=new")
        assert cache.lookup(other, fp) is None and cache.lookup_raw(other, fp.raw_sha) is None
        assert cache.lookup(other, Fingerprint.of(reencode(image, "JPEG", quality=75))) is None
