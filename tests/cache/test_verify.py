"""Each verification check, and the reason it gives, on one real photo."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image, ImageEnhance, ImageOps

from cache_store import Fingerprint
from cache_store.verify import mismatch
from cache_support import reencode


@pytest.fixture(scope="module")
def photo(fitted: dict[str, Image.Image], photo_set) -> Image.Image:
    """The street scene of the active photo set."""
    return fitted[photo_set.photo("street").name]


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        (lambda im: reencode(im, "JPEG", quality=40), None),
        (lambda im: im.convert("L").convert("RGB"), "colour"),
        (lambda im: ImageEnhance.Brightness(im).enhance(1.4), "brightness"),
        (ImageOps.mirror, "structure"),
    ],
)
def test_each_check_names_what_differs(photo: Image.Image, variant, reason: str | None) -> None:
    assert mismatch(Fingerprint.of(variant(photo)), Fingerprint.of(photo)) == reason


def test_aspect_and_alpha_are_checked_before_pixels(photo: Image.Image) -> None:
    fp = Fingerprint.of(photo)
    assert mismatch(replace(fp, width=round(fp.width * 1.1)), fp) == "aspect"
    assert mismatch(replace(fp, width=fp.width + 1), fp) is None  # rounding of a resize
    assert mismatch(replace(fp, has_alpha=True), fp) == "alpha"


def test_a_damaged_signature_is_an_error(photo: Image.Image) -> None:
    fp = Fingerprint.of(photo)
    with pytest.raises(ValueError):
        mismatch(replace(fp, signature=fp.signature[:-1]), fp)


def test_fingerprint_rejects_what_is_not_an_image() -> None:
    with pytest.raises(TypeError):
        Fingerprint.of(b"\x89PNG")  # type: ignore[arg-type]
