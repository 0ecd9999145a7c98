"""Engines: the torch reference and a faster CPU runtime (OpenVINO) behind one interface.

``load_engine(style, ...)`` gives a ``StyleEngine``; its ``current()`` is a ``Runner`` (the
torch ``Stylizer`` or an ``OpenVINORunner``) with ``.style``, ``.weights_sha256``,
``.engine``, ``.precision``, ``.stylize`` and ``.stylize_batch``. ``label(runner)`` is its
part of a cache namespace. See ``engine.py`` for what "auto" picks and why.
"""

from __future__ import annotations

from animegan.engines.engine import StyleEngine, load_engine
from animegan.engines.runner import EngineFailure, Runner, label

__all__ = ["EngineFailure", "Runner", "StyleEngine", "label", "load_engine"]
