"""Converting a style's generator for OpenVINO, and quantizing it to int8: the slow part.

Runs in a child process (``python -m animegan.engines.build``) at low CPU priority, so the
serving process keeps answering with the torch engine meanwhile and a crash in a native
converter cannot take it down. The result is a folder in ``animegan.engines.store``:
OpenVINO IR (``model.xml``, ``model.bin``: XML and raw tensors, nothing to unpickle), a
probe (an input and the float32 torch output for it, a NumPy array) and a manifest.

The model is converted with a dynamic batch, height and width, so any photo size runs on
the one converted model: no per-size compile.

int8 (``quantize``): NNCF's post-training quantization, weights per output channel,
activations calibrated on public photos only (``calibration_photos``), with the
convolutions that measure sensitive kept out of int8 (``INT8_KEEP``) and no quantizers in
front of operations that gain nothing from int8 here (``NOT_QUANTIZED``). Those layers run
in bf16 where the CPU has it, else fp32 (the compile-time hint, see ``openvino_runner``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from animegan.models import ARCH_STRIDE, build_model
from animegan.precision import probe_image
from animegan.styles import Arch, Style, get_style
from animegan.weights import read_weights

#: Bump whenever a change here (conversion, recipe, calibration) can change the output; it is
#: part of the store key and of the cache namespace.
RECIPE_VERSION = 2
#: The converted models: "fp32" runs at fp32 or with the bf16 hint; "int8" is quantized.
KINDS = ("fp32", "int8")
#: Per architecture, the convolutions kept out of int8 (module paths in the generator): the
#: ones a per-layer sweep measured as costing the most PSNR against float32
#: (bench/results/engine.md). An architecture without an entry has no int8 recipe.
INT8_KEEP: dict[Arch, tuple[str, ...]] = {
    "animeganv2": (
        "block_a.0.1",  # the 7x7 on the input photo
        "block_c.1.layers.1.1",  # the four depthwise 3x3 (few operations: int8 saves nothing)
        "block_c.2.layers.1.1",
        "block_c.3.layers.1.1",
        "block_c.4.layers.1.1",
        "out_layer.0",  # the 1x1 to RGB, right before tanh
    ),
}
#: Operation types NNCF would put quantizers in front of, which compute nothing in int8 on
#: a CPU (they only add rounding): quantizing them cost 5 dB.
NOT_QUANTIZED = ("GroupNormalization", "Interpolate", "Add")
#: Calibration photos are fitted to this longest side (statistics barely move with size).
CALIBRATION_SIDE = 320
#: The probe: a synthetic test card of this size (odd multiple of the stride on purpose).
PROBE_SIZE = (100, 132)
_REPO = Path(__file__).resolve().parents[2]
#: Public photos that ship with the repository (CC0 / public domain, see their ATTRIBUTION.md).
CALIBRATION_DIRS = (_REPO / "examples", _REPO / "tests" / "data" / "photos")


def calibration_photos() -> list[Path]:
    """The license-clean photos to calibrate int8 on: ``examples/*.jpg`` and
    ``tests/data/photos/*.jpg`` of the checkout (an installed package has none: no int8)."""
    return sorted(path for folder in CALIBRATION_DIRS for path in folder.glob("*.jpg"))


def photo_batch(path: Path, side: int, stride: int) -> np.ndarray:
    """A photo as a (1, 3, H, W) float32 batch in [-1, 1], fitted to ``side``, cropped to
    the stride."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    image.thumbnail((side, side), Image.Resampling.BICUBIC)
    width, height = image.size
    image = image.crop((0, 0, width - width % stride, height - height % stride))
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(array / 127.5 - 1.0, dtype=np.float32)


def load_model(style: Style, weights: Path) -> Any:
    """``style``'s generator in float32, eval mode, from ``weights`` (checked by SHA-256)."""
    model = build_model(style.arch)
    model.load_state_dict(read_weights(weights, style.sha256).state_dict, strict=True)
    return model.eval()


def convert(model: Any) -> Any:
    """The float32 torch generator as an OpenVINO model with dynamic batch, height and width."""
    import openvino as ov
    import torch

    with torch.no_grad():
        return ov.convert_model(
            model, example_input=torch.zeros(1, 3, 64, 64), input=[ov.PartialShape([-1, 3, -1, -1])]
        )


def kept_names(ov_model: Any, arch: Arch) -> list[str]:
    """The converted graph's names of ``INT8_KEEP[arch]``'s convolutions."""
    prefixes = tuple(f"__module.{name}/" for name in INT8_KEEP[arch])
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops()]
    found = [name for name in names if name.startswith(prefixes) and name.endswith("Convolution")]
    if len(found) != len(prefixes):
        raise RuntimeError(f"int8 recipe: found {found} for {INT8_KEEP[arch]}")
    return found


def quantize(ov_model: Any, arch: Arch, photos: list[Path]) -> Any:
    """``ov_model`` with int8 convolutions, calibrated on ``photos`` (see the module doc)."""
    import logging

    import nncf

    if arch not in INT8_KEEP:
        raise RuntimeError(f"no int8 recipe for the {arch} generator")
    if not photos:
        raise RuntimeError(f"no calibration photos in {', '.join(map(str, CALIBRATION_DIRS))}")
    nncf.set_log_level(logging.ERROR)
    batches = [photo_batch(path, CALIBRATION_SIDE, ARCH_STRIDE[arch]) for path in photos]
    return nncf.quantize(
        ov_model,
        nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: most follow a LeakyReLU
        subset_size=len(batches),
        fast_bias_correction=True,
        ignored_scope=nncf.IgnoredScope(names=kept_names(ov_model, arch), types=list(NOT_QUANTIZED)),
    )


def probe(model: Any) -> np.ndarray:
    """(2, 1, 3, H, W): the probe input and the float32 torch output for it."""
    import torch

    x = probe_image(max(PROBE_SIZE))[:, :, : PROBE_SIZE[0], : PROBE_SIZE[1]].contiguous()
    with torch.no_grad():
        y = model(x)
    return np.stack([x.numpy(), y.numpy()]).astype(np.float32)


def build(style: Style, weights: Path, kind: str, out: Path) -> dict[str, Any]:
    """Convert (and for "int8" quantize) ``style``'s model into the folder ``out``; returns
    the build facts that go into the manifest."""
    import openvino as ov

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    started = time.perf_counter()
    model = load_model(style, weights)
    ov_model = convert(model)
    photos: list[Path] = []
    if kind == "int8":
        photos = calibration_photos()
        ov_model = quantize(ov_model, style.arch, photos)
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, out / "model.xml", compress_to_fp16=False)
    np.save(out / "probe.npy", probe(model), allow_pickle=False)
    return {
        "build_s": round(time.perf_counter() - started, 2),
        "calibration_photos": [path.name for path in photos],
    }


def main(argv: list[str] | None = None) -> int:
    """The child process: build one model into ``--out`` and print the build facts as JSON."""
    parser = argparse.ArgumentParser(description="Convert a style's generator for OpenVINO.")
    parser.add_argument("--style", required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nice", type=int, default=10, help="lower this process's CPU priority by this")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    import torch

    from animegan.inference import cpu_threads

    torch.set_num_threads(cpu_threads())
    facts = build(get_style(args.style), args.weights, args.kind, args.out)
    print(json.dumps(facts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
