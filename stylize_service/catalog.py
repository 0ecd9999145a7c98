"""Which styles can be used now, and for the others, how to get them.

At start the app asks once: a style whose weights are missing is downloaded (or built
from its pinned public source) when the machine is online, through the download mirror
if one is set; otherwise it is unavailable, and `note` keeps the engine's own message
(which names the file, the folders searched and where to download it) for the operator:
the log and the CLI show it, never the public page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from animegan.errors import WeightsError
from animegan.styles import STYLES, Style
from animegan.weights import ensure_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StyleStatus:
    style: Style
    available: bool
    note: str = ""


def style_catalog(
    weights_dir: Path | None, *, download: bool, mirror: str | None = None, log_missing: bool = True
) -> list[StyleStatus]:
    """Every registered style, in registry order, with whether it can run now; a missing
    style's reason is logged (unless `log_missing` is False: the caller shows it)."""
    statuses = []
    for style in STYLES.values():
        try:
            ensure_weights(style, weights_dir, allow_download=download, mirror=mirror)
            statuses.append(StyleStatus(style, True))
        except WeightsError as exc:
            if log_missing:
                log.warning("style %s is not installed: %s", style.name, exc)
            statuses.append(StyleStatus(style, False, str(exc)))
    return statuses
