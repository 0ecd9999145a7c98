"""Regenerate the golden fingerprints of test_model.py::test_golden_output (run by hand).

    ANIMEGAN_WEIGHTS_DIR=../shared/weights .venv/bin/python -m tests.engine.make_golden

It stylizes each photo set's street scene (the shared set's real photo, and the clean
set's drawn one), fitted to GOLDEN_SIDE, with the Hayao weights in float32, and stores
the output box-downscaled to FINGERPRINT_SIZE as float32 .npy, one file per set (about
18 KB each; no photo or weights are copied into the repository). ``--set shared`` or
``--set clean`` remakes one. The shared set needs ../shared/photos (or
ANIMEGAN_PHOTOS_DIR); the clean set is drawn on the spot. The run is deterministic:
regenerating without a code change rewrites the same bytes. The test allows 40 dB PSNR
of drift (float summation order differs across CPUs); changing the LeakyReLU slope from
0.2 to 0.22 already gives 38 dB. Regenerate only when an output change is intended, and
bump PIPELINE_VERSION in the same commit, so result caches do not serve outputs of the
old pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # photo_sets lives in tests/, on pytest's pythonpath
    sys.path.insert(0, str(TESTS))

from tests.support.photo_sets import PhotoSet, SetName, clean_set, shared_set  # noqa: E402

GOLDEN_ROLE = "street"
GOLDEN_SIDE = 256
FINGERPRINT_SIZE = (48, 32)  # the street scenes' 3:2 aspect at a size that keeps the file small
DATA = Path(__file__).parent / "data"


def golden_file(set_name: SetName) -> Path:
    return DATA / f"golden_hayao_fp32_{set_name}.npy"


def fingerprint(image: Image.Image) -> np.ndarray:
    """Mean colours of FINGERPRINT_SIZE boxes, in 0..255 float32."""
    small = image.convert("RGB").resize(FINGERPRINT_SIZE, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def stylize_golden(photos: PhotoSet, weights_dir: Path) -> tuple[Image.Image, Image.Image]:
    """(fitted input, fp32 output) for the set's golden photo."""
    from animegan.inference import load_stylizer
    from animegan.intake import open_image

    stylizer = load_stylizer("hayao", weights_dir=weights_dir, precision="fp32", device="cpu")
    fitted = open_image(photos.photo(GOLDEN_ROLE)).fit(GOLDEN_SIDE)
    return fitted.rgb, stylizer.stylize(fitted.rgb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["shared", "clean"], action="append", dest="sets")
    sets = parser.parse_args().sets or ["shared", "clean"]
    shared = TESTS.parents[0].parent / "shared"
    weights = Path(os.environ.get("ANIMEGAN_WEIGHTS_DIR") or shared / "weights")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            if name == "shared":
                photos = shared_set(Path(os.environ.get("ANIMEGAN_PHOTOS_DIR") or shared / "photos"))
            else:
                photos = clean_set(Path(tmp) / "clean", TESTS.parent / "examples")
            _, output = stylize_golden(photos, weights)
            DATA.mkdir(parents=True, exist_ok=True)
            np.save(golden_file(name), fingerprint(output))
            print(f"wrote {golden_file(name)} from {photos.roles[GOLDEN_ROLE]} at {output.size}")


if __name__ == "__main__":
    main()
