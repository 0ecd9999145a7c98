"""The uploads the benchmarks send: real photos, their re-encoded copies and look-alikes.

Every request knows its source photo, so a hit can be checked against ground truth: a
hit that serves the output of another photo, or of a look-alike that must not match
(a mirrored, greyscale or brightened copy), is a false hit.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from bench.common import encoded


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _half(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS)


#: How one photo is uploaded again: the seed's replay re-encodes each photo 5 ways. The
#: original file counts as the first encoding.
REENCODINGS: dict[str, Callable[[Path], bytes]] = {
    "original": lambda p: p.read_bytes(),
    "jpeg_q85": lambda p: encoded(_rgb(p), "JPEG", quality=85),
    "jpeg_q60": lambda p: encoded(_rgb(p), "JPEG", quality=60),
    "half_jpeg_q85": lambda p: encoded(_half(_rgb(p)), "JPEG", quality=85),
    "webp_q80": lambda p: encoded(_rgb(p), "WEBP", quality=80),
}

#: Look-alikes of a cached photo that are different pictures and must never hit.
#: pHash works on luminance, so greyscale and brightened copies keep most of its bits.
ADVERSARIAL: dict[str, Callable[[Path], bytes]] = {
    "mirrored": lambda p: encoded(ImageOps.mirror(_rgb(p)), "JPEG", quality=90),
    "greyscale": lambda p: encoded(ImageOps.grayscale(_rgb(p)).convert("RGB"), "JPEG", quality=90),
    "brighter_40pct": lambda p: encoded(ImageEnhance.Brightness(_rgb(p)).enhance(1.4), "JPEG", quality=90),
}

#: Mild re-encodings, each within any sane near-duplicate threshold: for the load tests,
#: where every copy of a finished photo is expected to hit.
MILD: dict[str, Callable[[Path], bytes]] = {
    "original": REENCODINGS["original"],
    "jpeg_q85": REENCODINGS["jpeg_q85"],
    "webp_q80": REENCODINGS["webp_q80"],
}


@dataclass(frozen=True)
class Request:
    source: str  # the photo's file name: ground truth
    variant: str
    data: bytes

    @property
    def name(self) -> str:
        suffix = {"RIFF": ".webp", "\x89PNG": ".png"}.get(self.data[:4].decode("latin-1"), ".jpg")
        return f"{Path(self.source).stem}__{self.variant}{suffix}"


def requests_for(paths: list[Path], variants: dict[str, Callable[[Path], bytes]]) -> list[Request]:
    return [Request(p.name, name, make(p)) for p in paths for name, make in variants.items()]


def replay(paths: list[Path], seed: int = 5) -> list[Request]:
    """The seed's replay: every photo 5 times, differently encoded, in shuffled order."""
    requests = requests_for(paths, REENCODINGS)
    random.Random(seed).shuffle(requests)
    return requests


def jpeg_quality_copies(path: Path, qualities: range) -> list[Request]:
    """Distinct re-encodings of one photo (each a new upload, never byte-identical)."""
    image = _rgb(path)
    return [Request(path.name, f"jpeg_q{q}", encoded(image, "JPEG", quality=q)) for q in qualities]


def large_and_reduced(path: Path, side: int = 1200, factor: float = 0.8) -> list[Request]:
    """The near-duplicate case the cache is built for: the photo as a `side` px JPEG
    (stylized first), and a `factor` x WebP of it (the near-duplicate that is looked up)."""
    image = _rgb(path)
    scale = side / max(image.size)
    large = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    reduced = large.resize(
        (round(large.width * factor), round(large.height * factor)), Image.Resampling.LANCZOS
    )
    return [
        Request(path.name, f"jpeg_{side}px", encoded(large, "JPEG", quality=90)),
        Request(path.name, f"webp_{factor}x", encoded(reduced, "WEBP", quality=80)),
    ]


def distinct_pictures(paths: list[Path]) -> list[Request]:
    """Three different pictures per photo (as is, mirrored, top half): for queued misses.

    Only their file names tell them apart here; they are never checked against a source.
    """
    out = []
    for path in paths:
        image = _rgb(path)
        top = image.crop((0, 0, image.width, image.height // 2))
        out += [
            Request(path.name, "original", path.read_bytes()),
            Request(path.name, "new_mirrored", encoded(ImageOps.mirror(image), "JPEG", quality=90)),
            Request(path.name, "new_top_half", encoded(top, "JPEG", quality=90)),
        ]
    return out


def write(requests: list[Request], folder: Path) -> list[Path]:
    """The uploads as files (what gradio_client sends), named source__variant."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for request in requests:
        path = folder / request.name
        if not path.exists():
            path.write_bytes(request.data)
        paths.append(path)
    return paths
