"""Recipes: a style's PyTorch state dict, built from the public file it was made from.

``hayao`` and ``whitebox`` exist publicly only as TFLite models (see ``Style.recipe``).
A conversion reads the model's constants in the order its graph uses them and assigns
them, in that order, to the keys of the PyTorch module's state dict, whose registration
order follows the same forward pass; every shape is checked, so a different or reordered
graph fails loudly instead of loading into the wrong layer.

The build is deterministic: plain float32 arithmetic on pinned bytes, and ``torch.save``
writes the same bytes for the same object (fixed zip timestamps, a serialization id
derived from the content). Two container details are not tensor data but still bytes of
the file, and both had to match the reference files: the zip's top folder name, which
``torch.save`` takes from the name of the file it writes (so the recipe writes
``<archive_name>.pt`` in a private temporary folder and renames it into place), and the
pickled mapping, which is ``Module.state_dict()``'s OrderedDict with its ``_metadata``
(for Hayao, a plain dict of the same tensors pickles 4.8 KB smaller). With both, the built files
are byte for byte the reference files (SHA-256 ``b5c0688a...`` for Hayao,
``aa0204bd...`` for White-box), which ``Style.sha256`` pins; a build that differs
(another torch serialization format, say) is discarded with a clear error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from animegan.errors import ChecksumMismatchError, WeightsCorruptError, WeightsNotFoundError
from animegan.models import build_model
from animegan.styles import Conversion, Style
from animegan.tflite_reader import TFLiteFormatError, TFLiteModel

log = logging.getLogger(__name__)

Arrays = list[np.ndarray]


def animeganv2_int8_tflite(model: TFLiteModel) -> Arrays:
    """The AnimeGANv2 generator's weights from PINTO's full-integer TFLite, in graph order.

    Per conv-norm-LReLU unit the graph runs CONV_2D (weights OHWI; the quantizer's int32
    bias is all zeros, as the TF convs have none), then LayerNorm as MUL by gamma and SUB
    from beta, each a constant vector. Depthwise convs (weights 1HWC) carry a real bias.
    """
    arrays: Arrays = []
    for op in model.operators:
        if op.kind == "CONV_2D":
            _, weight, bias = op.inputs
            arrays.append(model.constant(weight).transpose(0, 3, 1, 2))
            if np.any(model.constant(bias)):
                raise TFLiteFormatError(f"conv {model.name(weight)!r} has a bias the layout lacks")
        elif op.kind == "DEPTHWISE_CONV_2D":
            _, weight, bias = op.inputs
            arrays += [model.constant(weight).transpose(3, 0, 1, 2), model.constant(bias)]
        elif op.kind in ("MUL", "SUB"):
            arrays += [
                model.constant(i) for i in op.inputs if model.is_constant(i) and len(model.shape(i)) == 1
            ]
    return arrays


def whitebox_fp16_tflite(model: TFLiteModel) -> Arrays:
    """The White-box generator's 18 convs (weights OHWI, then bias) from the fp16 TFLite.

    The graph's depthwise convs are the guided filter's fixed box sums, which the port
    computes itself, so only CONV_2D operators carry weights.
    """
    arrays: Arrays = []
    for op in model.operators:
        if op.kind == "CONV_2D":
            _, weight, bias = op.inputs
            arrays += [model.constant(weight).transpose(0, 3, 1, 2), model.constant(bias)]
    return arrays


CONVERSIONS: dict[Conversion, Callable[[TFLiteModel], Arrays]] = {
    "animeganv2_int8_tflite": animeganv2_int8_tflite,
    "whitebox_fp16_tflite": whitebox_fp16_tflite,
}


def convert(style: Style, data: bytes) -> dict[str, Tensor]:
    """The state dict for ``style`` from its source file's bytes (raises TFLiteFormatError).

    Returned as ``Module.state_dict()`` returns it (an OrderedDict carrying each
    submodule's version in ``_metadata``), which is what the reference files hold.
    """
    assert style.recipe is not None
    arrays = CONVERSIONS[style.recipe.conversion](TFLiteModel(data))
    model = build_model(style.arch)
    template = model.state_dict()
    if len(arrays) != len(template):
        raise TFLiteFormatError(
            f"the graph has {len(arrays)} weight tensors, the {style.arch} generator {len(template)}"
        )
    state = {}
    for (key, like), array in zip(template.items(), arrays, strict=True):
        if tuple(like.shape) != array.shape:
            raise TFLiteFormatError(f"{key} needs shape {tuple(like.shape)}, the graph gives {array.shape}")
        state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    model.load_state_dict(state, strict=True)
    return model.state_dict()


def build_weights(style: Style, source: Path, dest_dir: Path) -> Path:
    """Convert ``source`` into ``dest_dir / style.filename``, atomically; returns that path.

    Raises ``ChecksumMismatchError`` when the source is not the pinned file or the result
    is not the pinned file, ``WeightsCorruptError`` when the source cannot be converted,
    and ``WeightsNotFoundError`` when the TFLite reader is not installed.
    """
    recipe = style.recipe
    assert recipe is not None
    data = source.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != recipe.source.sha256:
        raise ChecksumMismatchError(
            f"The file {source} is not the source of style {style.name!r}'s weights "
            f"(SHA-256 {actual}, expected {recipe.source.sha256}); replace it with "
            f"{recipe.source.url}."
        )
    try:
        state = convert(style, data)
    except ModuleNotFoundError as exc:
        raise WeightsNotFoundError(
            f"Building the weights for style {style.name!r} from {source.name} needs the "
            f"Python package tflite: pip install tflite ({exc})."
        ) from exc
    except TFLiteFormatError as exc:
        raise WeightsCorruptError(
            f"The weights for style {style.name!r} could not be built from {source}: {exc}."
        ) from exc
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / style.filename
    with tempfile.TemporaryDirectory(prefix=f".{style.filename}.", suffix=".build", dir=dest_dir) as tmp:
        built = Path(tmp) / f"{recipe.archive_name}.pt"
        torch.save(state, built)
        sha256 = hashlib.sha256(built.read_bytes()).hexdigest()
        if style.sha256 is not None and sha256 != style.sha256:
            raise ChecksumMismatchError(
                f"The weights built for style {style.name!r} from {source.name} are not the "
                f"expected file (SHA-256 {sha256}, expected {style.sha256}); they were "
                f"discarded. torch {torch.__version__} may save in another format than the "
                "pinned torch in requirements.txt."
            )
        os.replace(built, target)
    log.info("built the %s weights %s from %s (SHA-256 %s)", style.name, target, source, sha256)
    return target
