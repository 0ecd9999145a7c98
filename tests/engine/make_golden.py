"""Regenerate the golden fingerprint of test_model.py::test_golden_output (run by hand).

    ANIMEGAN_WEIGHTS_DIR=../shared/weights ANIMEGAN_PHOTOS_DIR=../shared/photos \\
        .venv/bin/python -m tests.engine.make_golden

It stylizes GOLDEN_PHOTO, fitted to GOLDEN_SIDE, with the Hayao weights in float32 and
stores the output box-downscaled to FINGERPRINT_SIZE as float32 .npy (about 18 KB; no
photo or weights are copied into the repository). The run is deterministic: regenerating
without a code change rewrites the same bytes. The test allows 40 dB PSNR of drift (float
summation order differs across CPUs); changing the LeakyReLU slope from 0.2 to 0.22 already
gives 38 dB. Regenerate only when an output change is intended, and bump PIPELINE_VERSION
in the same commit, so result caches do not serve outputs of the old pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

GOLDEN_PHOTO = "scene_bryandlee_1.jpg"
GOLDEN_SIDE = 256
FINGERPRINT_SIZE = (48, 32)  # the photo's 3:2 aspect at a size that keeps the file small
GOLDEN_FILE = Path(__file__).parent / "data" / "golden_hayao_fp32.npy"


def fingerprint(image: Image.Image) -> np.ndarray:
    """Mean colours of FINGERPRINT_SIZE boxes, in 0..255 float32."""
    small = image.convert("RGB").resize(FINGERPRINT_SIZE, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def stylize_golden(photos_dir: Path, weights_dir: Path) -> tuple[Image.Image, Image.Image]:
    """(fitted input, fp32 output) for the golden photo."""
    from animegan.inference import load_stylizer
    from animegan.intake import open_image

    stylizer = load_stylizer("hayao", weights_dir=weights_dir, precision="fp32", device="cpu")
    fitted = open_image(photos_dir / GOLDEN_PHOTO).fit(GOLDEN_SIDE)
    return fitted.rgb, stylizer.stylize(fitted.rgb)


def main() -> None:
    repo = Path(__file__).resolve().parents[2]
    shared = repo.parent / "shared"
    photos = Path(os.environ.get("ANIMEGAN_PHOTOS_DIR") or shared / "photos")
    weights = Path(os.environ.get("ANIMEGAN_WEIGHTS_DIR") or shared / "weights")
    _, output = stylize_golden(photos, weights)
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.save(GOLDEN_FILE, fingerprint(output))
    print(f"wrote {GOLDEN_FILE} from {GOLDEN_PHOTO} at {output.size}")


if __name__ == "__main__":
    main()
