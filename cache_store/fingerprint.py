"""Fingerprints of an upload: what the exact tier keys on and the fuzzy tier compares.

Only hashes and a 384-byte signature are kept, never the photo: the signature is a 16x16
luma and an 8x8 chroma thumbnail (YCbCr), enough for `verify` to tell a re-encode from a
greyscale, tinted, mirrored or cropped copy, far too small to show the picture.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
from PIL import Image

LUMA_SIDE = 16
CHROMA_SIDE = 8
SIGNATURE_BYTES = LUMA_SIDE * LUMA_SIDE + 2 * CHROMA_SIDE * CHROMA_SIDE
#: Transparent pixels are judged over mid grey, so whatever RGB hides under alpha 0
#: (often black or white, depending on the editor) does not change the signature.
ALPHA_BACKGROUND = (128, 128, 128, 255)


@dataclass(frozen=True)
class Fingerprint:
    """Keys and signature of one decoded, normalized upload.

    `pixel_sha` covers mode, size and pixels, so two files with the same picture (metadata
    stripped, PNG re-saved) share it. `phash` is imagehash's 64-bit DCT hash as an unsigned
    int. `raw_sha` is the upload file's sha256 when the caller has it.
    """

    pixel_sha: str
    phash: int
    signature: bytes
    width: int
    height: int
    has_alpha: bool
    raw_sha: str | None = None

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @staticmethod
    def raw_key(data: bytes) -> str:
        """sha256 hex of the uploaded file's bytes: the key of the pre-decoding fast path."""
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def of(cls, image: Image.Image, raw_sha: str | None = None) -> Fingerprint:
        """Fingerprint `image` as the model will see it (RGB, or RGBA when it has alpha)."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"Fingerprint.of needs a PIL image, not {type(image).__name__}")
        if image.width < 1 or image.height < 1:
            raise ValueError("Fingerprint.of needs a non-empty image")
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        normalized = _normalized(image, has_alpha)
        opaque = _over_background(normalized) if has_alpha else normalized
        return cls(
            pixel_sha=pixel_key(normalized),
            phash=int(str(imagehash.phash(opaque)), 16),
            signature=signature(opaque),
            width=image.width,
            height=image.height,
            has_alpha=has_alpha,
            raw_sha=raw_sha,
        )


def pixel_key(image: Image.Image) -> str:
    """sha256 over mode, size and raw pixels: equal only for the very same picture."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def signature(rgb: Image.Image) -> bytes:
    """16x16 Y, then 8x8 Cb and 8x8 Cr, each an area average (box filter) of `rgb`.

    Area averages barely move under re-encoding or resizing, which is what lets the
    verifier use tight tolerances.
    """
    small = rgb.resize((LUMA_SIDE, LUMA_SIDE), Image.Resampling.BOX).convert("YCbCr")
    chroma = small.resize((CHROMA_SIDE, CHROMA_SIDE), Image.Resampling.BOX)
    return small.getchannel(0).tobytes() + chroma.getchannel(1).tobytes() + chroma.getchannel(2).tobytes()


def _normalized(image: Image.Image, has_alpha: bool) -> Image.Image:
    wanted = "RGBA" if has_alpha else "RGB"
    return image if image.mode == wanted else image.convert(wanted)


def _over_background(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND)
    return Image.alpha_composite(background, rgba).convert("RGB")
