"""Which near-duplicates the fuzzy tier serves: the keys and rules around the contract.

The contract itself (every must-hit and must-miss edit on every test photo) is
`test_contract.py`; here: exact keys, alpha, namespaces and entries without tolerances.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from cache_store import Fingerprint, ResultCache
from tests.support.cache import fit, reencode, stored_print

NS = "style=hayao|weights=test|fp32|side512|v1|png"


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
        cache.put(NS, stored_print(image), b"opaque", {})
        assert Fingerprint.of(with_alpha).has_alpha
        assert cache.lookup(NS, Fingerprint.of(with_alpha)) is None
        cache.put(NS, stored_print(with_alpha), b"rgba", {})
        hit = cache.lookup(NS, Fingerprint.of(reencode(with_alpha, "WEBP", quality=80)))
        assert hit is not None and hit.value == b"rgba"


def test_namespaces_are_separate(tmp_path: Path, fitted: dict[str, Image.Image]) -> None:
    image = next(iter(fitted.values()))
    fp = stored_print(image, raw_sha="ab" * 32)
    with ResultCache(tmp_path) as cache:
        cache.put(NS, fp, b"hayao", {})
        other = NS.replace("weights=test", "weights=new")
        assert cache.lookup(other, fp) is None and cache.lookup_raw(other, fp.raw_sha) is None
        assert cache.lookup(other, Fingerprint.of(reencode(image, "JPEG", quality=75))) is None
        assert cache.lookup(NS, Fingerprint.of(reencode(image, "JPEG", quality=75))).kind == "fuzzy"


def test_an_entry_without_tolerances_is_found_by_its_keys_only(tmp_path: Path, fitted) -> None:
    """Stored uncalibrated, an entry cannot be judged as a near-duplicate: never served so."""
    image = next(iter(fitted.values()))
    fp = Fingerprint.of(image, raw_sha="cd" * 32)
    with ResultCache(tmp_path) as cache:
        cache.put(NS, fp, b"keys only", {})
        assert cache.lookup_raw(NS, fp.raw_sha).value == b"keys only"
        assert cache.lookup(NS, Fingerprint.of(image)).kind == "exact"
        assert cache.lookup(NS, Fingerprint.of(reencode(image, "JPEG", quality=90))) is None
        cache.put(NS, fp.calibrated(image), b"keys only", {})  # stored again, calibrated
        assert cache.lookup(NS, Fingerprint.of(reencode(image, "JPEG", quality=90))).kind == "fuzzy"
