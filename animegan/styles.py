"""The registry of styles: which weights file each style needs, from where, under what terms.

A style's weights come from one of two public places (``Style.origin`` says which):

* a direct download of the ``.pt`` state dict (``Style.url``: the four bryandlee styles,
  whose upstream publishes no checksum);
* a recipe (``Style.recipe``): a public file pinned to a git commit and a SHA-256, which
  ``animegan.recipes`` converts into the state dict (``hayao`` and ``whitebox``, which
  exist publicly only as TFLite models). The result's SHA-256 is pinned too
  (``Style.sha256``), so a built file is the same file on every machine.

Pure data with no torch import, so the UI can list styles without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from animegan.errors import UnknownStyleError

Arch = Literal["animeganv2", "whitebox"]
Conversion = Literal["animeganv2_int8_tflite", "whitebox_fp16_tflite"]

ANIMEGANV2_LICENSE = "AnimeGANv2 weights: free for non-commercial purposes only"
WHITEBOX_LICENSE = "CC BY-NC-SA 4.0, non-commercial"
_BRYANDLEE_URL = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{}.pt"


@dataclass(frozen=True)
class PinnedFile:
    """A file in a public GitHub repository, pinned to one commit and to its SHA-256.

    The URL names the commit, not a branch, so it keeps serving the same bytes; the
    SHA-256 still guards against a changed host or a mirror serving something else.
    """

    repository: str
    commit: str
    path: str
    sha256: str
    license: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.path}"

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Recipe:
    """How a style's weights are built from a public source file.

    ``conversion`` names the function in ``animegan.recipes`` that maps the source's
    tensors onto the style's architecture. ``archive_name`` is the folder name inside the
    saved ``.pt`` zip: ``torch.save`` takes it from the file name it writes to, and it is
    part of the file's bytes, so the recipe must use the one the pinned file was made with.
    """

    source: PinnedFile
    conversion: Conversion
    archive_name: str
    summary: str


@dataclass(frozen=True)
class Style:
    """One selectable look: a generator architecture plus the weights file that defines it.

    ``url`` is the direct download of the ``.pt`` file, ``recipe`` says how to build it
    from a public source instead; with neither, the file must be provided by hand.
    ``sha256`` is None when no checksum is known, in which case a downloaded file is only
    checked by loading it.
    """

    name: str
    label: str
    arch: Arch
    filename: str
    url: str | None
    sha256: str | None
    license: str
    description: str
    recipe: Recipe | None = None

    @property
    def origin(self) -> str:
        """Where the weights come from, in words (``--list-styles`` prints it)."""
        if self.recipe is not None:
            source = self.recipe.source
            return (
                f"built from {source.repository}@{source.commit[:12]}:{source.path} ({self.recipe.summary})"
            )
        return f"downloaded from {self.url}" if self.url else "provided by hand"


def _bryandlee(name: str, label: str, description: str) -> Style:
    return Style(
        name=name,
        label=label,
        arch="animeganv2",
        filename=f"{name}.pt",
        url=_BRYANDLEE_URL.format(name),
        sha256=None,
        license=ANIMEGANV2_LICENSE,
        description=description,
    )


_ALL = (
    Style(
        name="hayao",
        label="Hayao (Miyazaki)",
        arch="animeganv2",
        filename="animeganv2_hayao_bryandlee.pt",
        url=None,
        sha256="b5c0688a05ea01e85c11464de6e0d44f1c3d31939741da8454c37b8678ff6c9a",
        license=ANIMEGANV2_LICENSE,
        description="Painterly Miyazaki palette with flattened textures; good for scenes.",
        recipe=Recipe(
            # TachibanaYoshino's AnimeGANv2 Hayao generator, full-integer quantized by the
            # PINTO model zoo (model 050), as stored in terryky/tflite_gles_app.
            source=PinnedFile(
                repository="terryky/tflite_gles_app",
                commit="11bffd9751cec6e53f176b2386771a2f9db007ae",
                path="gl2animegan2/model/animeganv2_hayao_256x256_integer_quant.tflite",
                sha256="7d9157db18ad9238a7189c4f56786dbb865f980e219c167def0988fc67ffe5e0",
                license="repository MIT; the weights: " + ANIMEGANV2_LICENSE,
            ),
            conversion="animeganv2_int8_tflite",
            archive_name="hayao_from_int8_tflite",
            summary="int8 weights dequantized to float32 ((q - zero point) x scale, per "
            "channel), mapped in graph order onto the bryandlee layout",
        ),
    ),
    _bryandlee(
        "face_paint_512_v2",
        "Face Paint v2",
        "Portrait style trained on 512 px faces; strong anime look, best on close-up faces.",
    ),
    _bryandlee(
        "face_paint_512_v1",
        "Face Paint v1",
        "Earlier portrait style; softer than v2, best on close-up faces.",
    ),
    _bryandlee(
        "celeba_distill",
        "CelebA Distill",
        "Portrait style distilled on CelebA faces; light stylization.",
    ),
    _bryandlee(
        "paprika",
        "Paprika",
        "Saturated colours in the style of the film Paprika; good for scenes.",
    ),
    Style(
        name="whitebox",
        label="Cartoon (White-box)",
        arch="whitebox",
        filename="whitebox_cartoon_pytorch.pt",
        url=None,
        sha256="aa0204bdc5f8f9ec626360ae4de8bde18dec1f6fb8f6e5a53cab7539e17a565f",
        license=WHITEBOX_LICENSE,
        description="Flat colour regions with dark outlines; keeps the original colours.",
        recipe=Recipe(
            # A TFLite conversion of SystemErrorWang/White-box-Cartoonization.
            source=PinnedFile(
                repository="margaretmz/Cartoonizer-with-TFLite",
                commit="b2cfa4a0547edaa63ba4e20dc555dc6fc79c22f9",
                path="android/app/src/main/ml/whitebox_cartoon_gan_fp16.tflite",
                sha256="7ebaaf2c3e83eb8332f19b333da507aa43752d2b418df9e67808a77d8432de02",
                license="repository Apache-2.0; the weights: " + WHITEBOX_LICENSE,
            ),
            conversion="whitebox_fp16_tflite",
            archive_name="whitebox_from_fp16_tflite",
            summary="float16 weights widened to float32 (exact), the 18 convolutions mapped "
            "in graph order onto the port in animegan/whitebox.py",
        ),
    ),
)

STYLES: dict[str, Style] = {style.name: style for style in _ALL}
DEFAULT_STYLE = "hayao"


def get_style(name: str) -> Style:
    """Return the registered style called ``name``, or raise ``UnknownStyleError``."""
    try:
        return STYLES[name]
    except KeyError:
        known = ", ".join(STYLES)
        raise UnknownStyleError(f"Unknown style {name!r}; choose one of: {known}.") from None
