"""Run-time settings, from command-line flags over environment variables over defaults.

One table serves the app and the CLI, so `ANIMEGAN_CACHE_DIR=... python app.py` and
`python app.py --cache-dir ...` mean the same thing, and a flag always wins. The host
falls back to `GRADIO_SERVER_NAME`/`GRADIO_SERVER_PORT`, which Hugging Face Spaces set.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from animegan.precision_choices import ENGINE_PRECISIONS, ENGINES

DEFAULT_CACHE_DIR = Path(".cache") / "results"
#: The defaults that live with the code that uses them (cache_store.DEFAULT_THRESHOLD,
#: animegan.intake.DEFAULT_MAX_SIDE), repeated here so that `--help` can show them without
#: importing those packages; tests/app/test_cli.py checks that they agree.
DEFAULT_THRESHOLD = 8
DEFAULT_MAX_SIDE = 768


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _http_url(text: str) -> str:
    """A base URL to download from: http(s) only, so a typo fails at start, not mid-download."""
    value = text.strip()
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {text!r}")
    return value


def _size(text: str) -> int:
    """Bytes from '1073741824', '512MB' or '2GB' (powers of 1024)."""
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
    value = text.strip().upper()
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything an operator can set; see the README's configuration table."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    mcp: bool = False
    cache_dir: Path = DEFAULT_CACHE_DIR
    cache_url: str | None = None
    no_cache: bool = False
    cache_size: int = 1 << 30
    ttl: float = 7 * 24 * 3600.0
    threshold: int = DEFAULT_THRESHOLD
    cache_scope: str = "global"
    weights_dir: Path | None = None
    offline: bool = False
    download_mirror: str | None = None
    max_side: int = DEFAULT_MAX_SIDE
    precision: str = "auto"
    engine: str = "auto"
    inference_workers: int = 1
    max_pending: int = 24
    video_side: int = 512
    video_seconds: float = 30.0


# flag -> (environment variable, parser, help). The dest of each flag is a Settings field.
_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "host": ("ANIMEGAN_HOST", str, "interface to listen on"),
    "port": ("ANIMEGAN_PORT", int, "port to listen on"),
    "share": ("ANIMEGAN_SHARE", _bool, "also open a public *.gradio.live link"),
    "mcp": ("ANIMEGAN_MCP", _bool, "serve Gradio's MCP server at /gradio_api/mcp/"),
    "cache_dir": ("ANIMEGAN_CACHE_DIR", Path, "result cache directory"),
    "cache_url": ("ANIMEGAN_CACHE_URL", str, "shared cache server, e.g. redis://host:6379/0"),
    "no_cache": ("ANIMEGAN_NO_CACHE", _bool, "run without the result cache"),
    "cache_size": (
        "ANIMEGAN_CACHE_SIZE",
        _size,
        "cache byte budget, e.g. 512MB or 2GB (results nobody came back for go first)",
    ),
    "ttl": ("ANIMEGAN_TTL", float, "seconds a cached result lives (0 = until evicted)"),
    "threshold": (
        "ANIMEGAN_THRESHOLD",
        int,
        "near-duplicate tier: pHash distance in bits (0 = exact hits only)",
    ),
    "cache_scope": (
        "ANIMEGAN_CACHE_SCOPE",
        str,
        "global: results shared by all visitors; session: per visitor",
    ),
    "weights_dir": ("ANIMEGAN_WEIGHTS_DIR", Path, "directory holding the generator weights"),
    "offline": ("ANIMEGAN_OFFLINE", _bool, "never download missing weights"),
    "download_mirror": (
        "ANIMEGAN_DOWNLOAD_MIRROR",
        _http_url,
        "fetch every download from <this URL>/<file name> instead of its upstream URL",
    ),
    "max_side": ("ANIMEGAN_MAX_SIDE", int, "longest side the model sees, in pixels"),
    "precision": ("ANIMEGAN_PRECISION", str, f"one of {', '.join(ENGINE_PRECISIONS)} (int8: OpenVINO only)"),
    "engine": (
        "ANIMEGAN_ENGINE",
        str,
        f"one of {', '.join(ENGINES)}: auto runs the fastest faithful engine this CPU supports",
    ),
    "inference_workers": ("ANIMEGAN_INFERENCE_WORKERS", int, "inferences run at once per process"),
    "max_pending": ("ANIMEGAN_MAX_PENDING", int, "uncached requests allowed to wait before 'busy'"),
    "video_side": ("ANIMEGAN_VIDEO_SIDE", int, "longest side of a clip's frames, in pixels"),
    "video_seconds": (
        "ANIMEGAN_VIDEO_SECONDS",
        float,
        "longest clip accepted, in seconds (0 = no Video tab)",
    ),
}

_CHOICES = {
    "precision": list(ENGINE_PRECISIONS),
    "engine": list(ENGINES),
    "cache_scope": ["global", "session"],
}

_BOOL_FLAGS = {"share", "mcp", "no_cache", "offline"}


#: The flags of `app.py`, in the order `--help` lists them.
APP_FLAGS = [
    "host",
    "port",
    "share",
    "mcp",
    "cache_dir",
    "cache_url",
    "no_cache",
    "cache_size",
    "ttl",
    "threshold",
    "cache_scope",
    "weights_dir",
    "offline",
    "download_mirror",
    "max_side",
    "precision",
    "engine",
    "inference_workers",
    "max_pending",
    "video_side",
    "video_seconds",
]


def add_arguments(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Add the flags `names` (Settings fields) to `parser`, each help naming its environment
    variable and default; unset flags stay None."""
    defaults = {field.name: field.default for field in fields(Settings)}
    for name in names:
        env, parse, help_text = _OPTIONS[name]
        flag = "--" + name.replace("_", "-")
        if name in _BOOL_FLAGS:
            parser.add_argument(flag, action="store_true", default=None, help=f"{help_text} [{env}]")
        else:
            default = defaults.get(name)
            shown = f"; default {_shown(name, default)}" if default is not None else ""
            parser.add_argument(
                flag, type=parse, default=None, choices=_CHOICES.get(name), help=f"{help_text} [{env}{shown}]"
            )


def app_settings(argv: list[str] | None = None) -> Settings:
    """`app.py`'s settings from its command line (`--help` answers here, before any heavy import)."""
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Photo to anime (AnimeGANv2), with a result cache: a Gradio app.",
    )
    add_arguments(parser, APP_FLAGS)
    settings = resolve(parser.parse_args(argv))
    if settings.mcp and settings.cache_scope == "session":
        parser.error(
            "--cache-scope session cannot be combined with --mcp: Gradio's MCP server calls the "
            "app with one shared session, so every MCP client would share one scope"
        )
    return settings


def _shown(name: str, value: object) -> str:
    if name == "cache_size" and isinstance(value, int):
        return f"{value >> 20} MB" if value < 1 << 30 else f"{value / 2**30:g} GB"
    if name == "video_seconds" and isinstance(value, float):
        return f"{value:g} s"
    if name == "ttl" and isinstance(value, float):
        return f"{value / 86400:g} days" if value >= 86400 else f"{value:g} s"
    return str(value)


def resolve(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from parsed flags, then the environment, then the defaults."""
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault("ANIMEGAN_HOST", environ.get("GRADIO_SERVER_NAME", ""))
    environ.setdefault("ANIMEGAN_PORT", environ.get("GRADIO_SERVER_PORT", ""))
    values: dict[str, Any] = {}
    for field in fields(Settings):
        flag_value = getattr(args, field.name, None) if args is not None else None
        if flag_value is not None:
            values[field.name] = flag_value
            continue
        env, parse, _ = _OPTIONS[field.name]
        raw = environ.get(env, "")
        if raw.strip():
            try:
                values[field.name] = parse(raw)
            except ValueError as exc:
                raise SystemExit(f"error: {env}={raw!r} is not valid: {exc}") from None
            choices = _CHOICES.get(field.name)
            if choices is not None and values[field.name] not in choices:
                raise SystemExit(f"error: {env}={raw!r} must be one of {', '.join(choices)}")
    return Settings(**values)
