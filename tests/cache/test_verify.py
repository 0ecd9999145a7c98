"""Each verification check, the reason it gives, and the signature's storage format."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from cache_store import Fingerprint
from cache_store.signature import SIZE, Signature
from cache_store.verify import REFERENCE_SIZE, Tolerances, mismatch, split_reference
from tests.support.cache import reencode, stored_print


class Row:
    """A stored row as the verifier reads it."""

    def __init__(self, fp: Fingerprint) -> None:
        self.signature = fp.signature + (fp.tolerances or b"")
        self.width, self.height, self.has_alpha = fp.width, fp.height, fp.has_alpha


@pytest.fixture(scope="module")
def photo(fitted: dict[str, Image.Image]) -> Image.Image:
    return fitted[sorted(fitted)[len(fitted) // 2]]


@pytest.fixture(scope="module")
def row(photo: Image.Image) -> Row:
    return Row(stored_print(photo))


@pytest.mark.parametrize(
    ("variant", "reasons"),
    [
        (lambda im: reencode(im, "JPEG", quality=40), {None}),
        (lambda im: im.convert("L").convert("RGB"), {"chroma", "colour", "colour_error"}),
        (lambda im: ImageEnhance.Brightness(im).enhance(1.4), {"brightness"}),
        (ImageOps.mirror, {"luma"}),
        (lambda im: im.crop((0, 0, round(im.width * 0.9), im.height)), {"aspect"}),
    ],
)
def test_each_check_names_what_differs(photo: Image.Image, row: Row, variant, reasons: set) -> None:
    assert mismatch(Fingerprint.of(variant(photo)), row) in reasons


def test_aspect_and_alpha_are_checked_before_pixels(photo: Image.Image, row: Row) -> None:
    fp = Fingerprint.of(photo)
    assert mismatch(replace(fp, width=round(fp.width * 1.1)), row) == "aspect"
    assert mismatch(replace(fp, width=fp.width + 1), row) is None  # rounding of a resize
    assert mismatch(replace(fp, has_alpha=True), row) == "alpha"


def test_an_uncalibrated_row_never_verifies(photo: Image.Image) -> None:
    fp = Fingerprint.of(photo)
    assert mismatch(fp, Row(fp)) == "uncalibrated"


def test_damaged_signatures_are_errors(photo: Image.Image, row: Row) -> None:
    fp = Fingerprint.of(photo)
    with pytest.raises(ValueError):
        Signature.from_bytes(fp.signature[:-1])
    junk = np.frombuffer(row.signature[:SIZE], dtype="<f2").copy()
    junk[3] = np.nan
    with pytest.raises(ValueError):
        split_reference(junk.tobytes() + row.signature[SIZE:])
    with pytest.raises(ValueError):
        Tolerances.from_bytes(row.signature[SIZE:-1])


def test_signature_and_tolerances_survive_storage(photo: Image.Image) -> None:
    fp = stored_print(photo)
    assert len(fp.signature) == SIZE and len(fp.signature + fp.tolerances) == REFERENCE_SIZE
    signature, tolerances = split_reference(fp.signature + fp.tolerances)
    fresh = Signature.of(photo)
    assert np.abs(signature.luma - fresh.luma).max() < 0.1  # float16 keeps a tenth of a level
    assert Tolerances.from_bytes(tolerances.to_bytes()).to_bytes() == tolerances.to_bytes()


def test_fingerprint_rejects_what_is_not_an_image() -> None:
    with pytest.raises(TypeError):
        Fingerprint.of(b"\x89PNG")  # type: ignore[arg-type]
