"""The registry of styles: which weights file each style needs, from where, under what terms.

Pure data with no torch import, so the UI can list styles without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from animegan.errors import UnknownStyleError

Arch = Literal["animeganv2", "whitebox"]

ANIMEGANV2_LICENSE = "AnimeGANv2 weights: free for non-commercial purposes only"
_BRYANDLEE_URL = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{}.pt"


@dataclass(frozen=True)
class Style:
    """One selectable look: a generator architecture plus the weights file that defines it.

    ``url`` is None when the file cannot be downloaded (it must be provided by hand);
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
        license="CC BY-NC-SA 4.0, non-commercial",
        description="Flat colour regions with dark outlines; keeps the original colours.",
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
