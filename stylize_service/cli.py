"""`python -m animegan`: stylize photos from the command line through the cached service.

Batch runs share the app's cache (`--cache-dir`), so re-running over a folder costs
milliseconds per photo already done. A bad input or an output that cannot be written prints
one line and the rest go on; the exit status is 1 if any input failed, 2 for a usage error.
Every input gets its own output file, also when two share a stem (`a.jpg` and `a.png`, or
the same name in two folders).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from animegan.styles import DEFAULT_STYLE

from . import build_clips, build_service
from . import settings as settings_module
from .memory import return_large_buffers

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
}
CLIP_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m animegan",
        description="Turn photos and clips into anime style (AnimeGANv2), with a result cache.",
    )
    parser.add_argument(
        "inputs", nargs="*", type=Path, help="photos, clips (MP4, MOV, WebM, animated GIF) or folders"
    )
    parser.add_argument(
        "-o", "--outdir", type=Path, default=Path("stylized"), help="output folder (default ./stylized)"
    )
    parser.add_argument(
        "--style", default=DEFAULT_STYLE, help=f"style name (default {DEFAULT_STYLE}; see --list-styles)"
    )
    parser.add_argument(
        "--list-styles", action="store_true", help="list the styles and whether each is available"
    )
    parser.add_argument(
        "--force", action="store_true", help="skip the cache look-up (still stores the result)"
    )
    settings_module.add_arguments(
        parser,
        [
            "weights_dir",
            "max_side",
            "precision",
            "engine",
            "cache_dir",
            "cache_url",
            "no_cache",
            "threshold",
            "offline",
            "download_mirror",
            "video_side",
            "video_seconds",
        ],
    )
    return parser


def expand(inputs: list[Path]) -> list[Path]:
    """Files as given, folders as their photos and clips (sorted, not recursive); each file once."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            wanted = IMAGE_SUFFIXES | CLIP_SUFFIXES
            paths.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in wanted))
        else:
            paths.append(item)
    seen: set[Path] = set()
    unique = []
    for path in paths:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def output_names(paths: list[Path], style: str, clips: set[Path] | None = None) -> list[str]:
    """One distinct output file name per input, in order: `<stem>_<style>.png` for a photo,
    `<stem>.mp4` for a clip (its GIF, for a GIF, beside it as `<stem>.gif`); inputs that
    share a stem add their suffix (`a-jpg_hayao.png`), and any name still taken a number
    (`a-jpg-2_hayao.png`, for the same name in two folders). Names compare case-insensitively,
    as on the file systems that ignore case."""
    clips = clips or set()
    return [
        f"{base}.mp4" if path in clips else f"{base}_{style}.png"
        for path, base in zip(paths, _distinct_bases(paths), strict=True)
    ]


def _distinct_bases(paths: list[Path]) -> list[str]:
    shared = Counter(path.stem.casefold() for path in paths)
    bases = [
        f"{path.stem}-{path.suffix.lstrip('.')}"
        if shared[path.stem.casefold()] > 1 and path.suffix
        else path.stem
        for path in paths
    ]
    used: set[str] = set()
    names = []
    for base in bases:
        name, number = base, 1
        while name.casefold() in used:
            number += 1
            name = f"{base}-{number}"
        used.add(name.casefold())
        names.append(name)
    return names


def is_clip(path: Path) -> bool:
    """A video, or an animated GIF / WebP (a still one is a photo), from its first bytes."""
    from animegan.formats import HEAD_BYTES, sniff

    try:
        with open(path, "rb") as handle:
            kind = sniff(handle.read(HEAD_BYTES))
    except OSError:
        return False  # the photo path reports it
    if kind in ("MP4", "MATROSKA"):
        return True
    if kind in ("GIF", "WEBP"):
        from PIL import Image

        try:
            with Image.open(path) as image:
                return bool(getattr(image, "is_animated", False))
        except Exception:
            return False  # the photo path refuses it with its message
    return False


def write_output(target: Path, png: bytes) -> None:
    """Write `png` to `target` whole or not at all (a failed write leaves no torn file)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(png)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def list_styles(settings: settings_module.Settings) -> int:
    from .catalog import style_catalog

    for status in style_catalog(settings.weights_dir, download=False, log_missing=False):
        mark = "available" if status.available else "missing"
        print(f"{status.style.name:20} {mark:10} {status.style.label} ({status.style.license})")
        # an installed style: where its weights came from; a missing one: why, and where to get them
        print(f"{'':20} {status.note or 'weights ' + status.style.origin}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_module.resolve(args)
    return_large_buffers()
    if args.list_styles:
        return list_styles(settings)
    paths = expand(args.inputs)
    if not paths:
        parser.error("no input images (give files or folders)")

    from animegan.errors import AnimeGANError, VideoError
    from animegan.styles import get_style
    from animegan.weights import ensure_weights

    try:
        # Obtain the weights as the settings allow (offline, mirror), then load them once.
        ensure_weights(
            get_style(args.style),
            settings.weights_dir,
            allow_download=not settings.offline,
            mirror=settings.download_mirror,
        )
        service = build_service(settings)
        service.stylizer(args.style)
    except AnimeGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        args.outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the output folder {args.outdir}: {exc}", file=sys.stderr)
        return 2
    failures = 0
    clips = {path for path in paths if is_clip(path)}
    clip_service = build_clips(settings, service) if clips else None
    targets = [args.outdir / name for name in output_names(paths, args.style, clips)]
    jobs = list(zip(paths, targets, strict=True))
    with tqdm(jobs, unit="file", disable=len(paths) < 2, file=sys.stderr) as bar:
        for path, target in bar:
            try:
                if path in clips:
                    if clip_service is None:
                        raise VideoError(
                            f"{path.name}: video is turned off (--video-seconds 0).", "unsupported"
                        )
                    done = clip_service.stylize(path, args.style, use_cache=not args.force)
                    outputs = [(target, done.mp4)] + (
                        [(target.with_suffix(".gif"), done.gif)] if done.gif else []
                    )
                    badge = done.badge()
                else:
                    outcome = service.stylize(path, args.style, use_cache=not args.force)
                    outputs, badge = [(target, outcome.png)], outcome.badge()
            except (AnimeGANError, OSError) as exc:
                failures += 1
                tqdm.write(f"{path}: {exc}", file=sys.stderr)
                continue
            try:
                for out, data in outputs:
                    write_output(out, data)
            except OSError as exc:
                failures += 1
                tqdm.write(f"{path}: could not write {target}: {exc}", file=sys.stderr)
                continue
            written = " + ".join(str(out) for out, _ in outputs)
            tqdm.write(f"{path} -> {written} ({badge})")
    if clip_service is not None:
        clip_service.close()
    service.close()
    return 1 if failures else 0
