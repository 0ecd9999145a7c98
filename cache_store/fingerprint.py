"""Fingerprints of an upload: what the exact tier keys on and the fuzzy tier compares.

Only hashes and a signature are kept, never the photo: the signature is a 16 x 16 mosaic
of brightness, colour and detail (`signature`), with, for a stored entry, how far each of
its cells may move (`calibration`). A query is fingerprinted from whatever resolution the
caller decoded (at least `PREVIEW_SIDE` on the short side), so a near-duplicate costs a
reduced decode, not a full one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import imagehash
import numpy as np
from PIL import Image

from .signature import PREVIEW_SIDE, Box, Signature
from .signature import SIZE as SIGNATURE_SIZE

__all__ = ["ALPHA_BACKGROUND", "PREVIEW_SIDE", "Fingerprint", "pixel_key"]

#: Transparent pixels are judged over mid grey, so whatever RGB hides under alpha 0
#: (often black or white, depending on the editor) does not change the signature.
ALPHA_BACKGROUND = (128, 128, 128, 255)


@dataclass(frozen=True)
class Fingerprint:
    """Keys and signature of one upload.

    `pixel_sha` keys the very pixels the result is computed from (None for a fingerprint
    made from a reduced preview: such a query finds exact copies by `raw_sha`, and
    everything else through the fuzzy tier). `phash` is imagehash's 64-bit DCT hash, as an
    unsigned int, of the 64 px working image. `width` and `height` are the whole picture's.
    `tolerances` is set by `calibrated` for an entry to be stored: without it, an entry is
    found by its keys only, never as a near-duplicate.
    """

    phash: int
    signature: bytes
    width: int
    height: int
    has_alpha: bool
    raw_sha: str | None = None
    pixel_sha: str | None = None
    tolerances: bytes | None = None

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @staticmethod
    def raw_key(data: bytes) -> str:
        """sha256 hex of the uploaded file's bytes: the key of the pre-decoding fast path."""
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def of(
        cls,
        image: Image.Image,
        *,
        raw_sha: str | None = None,
        exact: bool = True,
        box: Box | None = None,
        size: tuple[int, int] | None = None,
    ) -> Fingerprint:
        """Fingerprint `image` as the model will see it (RGB, or RGBA when it has alpha).

        For a reduced preview of a larger picture, pass `exact=False` (its pixels are not
        the picture's, so no `pixel_sha`), the picture's `size`, and the `box` of `image`
        that the whole picture covers if a decoder rounded its size up.
        """
        if not isinstance(image, Image.Image):
            raise TypeError(f"Fingerprint.of needs a PIL image, not {type(image).__name__}")
        if image.width < 1 or image.height < 1:
            raise ValueError("Fingerprint.of needs a non-empty image")
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        normalized = _normalized(image, has_alpha)
        signature = Signature.of(_opaque(normalized) if has_alpha else normalized, box)
        width, height = size or image.size
        return cls(
            phash=_phash(signature.working_luma),
            signature=signature.to_bytes(),
            width=width,
            height=height,
            has_alpha=has_alpha,
            raw_sha=raw_sha,
            pixel_sha=pixel_key(normalized) if exact else None,
        )

    @classmethod
    def of_key(cls, key: str, size: tuple[int, int]) -> Fingerprint:
        """A fingerprint for a value found by `key` alone (raw and pixel key): never a
        near-duplicate target, and compared with nothing. For results that are not one
        picture's, such as a whole clip's, keyed by the file's content."""
        return cls(
            phash=0,
            signature=bytes(SIGNATURE_SIZE),
            width=size[0],
            height=size[1],
            has_alpha=False,
            raw_sha=key,
            pixel_sha=key,
        )

    def keyed(self, picture: Image.Image) -> Fingerprint:
        """This fingerprint with the `pixel_sha` of `picture`, the pixels the result is
        computed from (a preview's fingerprint, once the upload is decoded for the model)."""
        has_alpha = "A" in picture.getbands() or "transparency" in picture.info
        return replace(self, pixel_sha=pixel_key(_normalized(picture, has_alpha)))

    def calibrated(self, picture: Image.Image) -> Fingerprint:
        """This fingerprint with tolerances measured on `picture` (what it was made from, at
        any size), so that the entry stored from it can be served as a near-duplicate."""
        from .calibration import tolerances

        opaque = _opaque(_normalized(picture, True)) if self.has_alpha else picture.convert("RGB")
        return replace(self, tolerances=tolerances(opaque).to_bytes())


def pixel_key(image: Image.Image) -> str:
    """sha256 over mode, size and raw pixels: equal only for the very same picture."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _phash(working_luma: np.ndarray) -> int:
    grey = Image.fromarray(np.clip(np.rint(working_luma), 0, 255).astype(np.uint8))
    return int(str(imagehash.phash(grey)), 16)


def _normalized(image: Image.Image, has_alpha: bool) -> Image.Image:
    wanted = "RGBA" if has_alpha else "RGB"
    return image if image.mode == wanted else image.convert(wanted)


def _opaque(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND)
    return Image.alpha_composite(background, rgba).convert("RGB")
