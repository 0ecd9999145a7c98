"""Cache-miss latency of the White-box generator next to AnimeGANv2 (Hayao), same process.

A cache miss pays one full generator forward pass, so that is what is timed: the net
alone on a real photo scaled to 512 and 1024 px on the longest side (sizes rounded down
to multiples of 4, no tiling), in float32 and in bfloat16 with channels_last. Variants
run round-robin so that load from other processes on a shared box hits them alike; the
median is reported, plus bf16-vs-fp32 PSNR so speed is never read without accuracy.

Run: ``python -m bench.bench_whitebox [--weights-dir DIR] [--repeats N]``.
Writes ``bench/results/whitebox.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animegan.generator import AnimeGANv2Generator
from animegan.whitebox import SIZE_MULTIPLE, WhiteboxGenerator
from bench.common import machine_line, photos_dir, round_robin, table, weights_dir, write_result

MODELS: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "whitebox": (WhiteboxGenerator, "whitebox_cartoon_pytorch.pt"),
    "animeganv2 hayao": (AnimeGANv2Generator, "animeganv2_hayao_bryandlee.pt"),
}
PRECISIONS = ("fp32", "bf16+channels_last")
SIDES = (512, 1024)
PHOTO = "scene_bryandlee_1.jpg"


def _load(factory: Callable[[], torch.nn.Module], path: Path, precision: str) -> torch.nn.Module:
    net = factory()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    if precision == "fp32":
        return net
    return net.to(torch.bfloat16, memory_format=torch.channels_last)


def _input(photo: Path, side: int, precision: str) -> torch.Tensor:
    with Image.open(photo) as source:
        img = source.convert("RGB")
    scale = side / max(img.size)
    w, h = (int(d * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE for d in img.size)
    arr = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 127.5 - 1.0
    x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()
    if precision == "fp32":
        return x
    return x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of [-1, 1] images (peak-to-peak 2), after the clamp a caller would apply."""
    mse = torch.mean((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2).item()
    return 10.0 * float(np.log10(4.0 / mse))


def measure(weights: Path, photo: Path, repeats: int) -> dict:
    """Median seconds per (model, precision, side), bf16-vs-fp32 PSNR per (model, side), and
    the input sizes (H, W) per side."""
    nets = {
        (model, prec): _load(factory, weights / filename, prec)
        for model, (factory, filename) in MODELS.items()
        for prec in PRECISIONS
    }
    seconds: dict[tuple[str, str, int], float] = {}
    psnr: dict[tuple[str, int], float] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    with torch.inference_mode():
        for side in SIDES:
            inputs = {prec: _input(photo, side, prec) for prec in PRECISIONS}
            shapes[side] = tuple(inputs["fp32"].shape[-2:])
            outputs = {key: net(inputs[key[1]]) for key, net in nets.items()}  # warm-up
            for model in MODELS:
                psnr[model, side] = _psnr(outputs[model, PRECISIONS[1]], outputs[model, "fp32"])
            runs = {key: partial(net, inputs[key[1]]) for key, net in nets.items()}
            for key, ms in round_robin(runs, repeats).items():
                seconds[(*key, side)] = statistics.median(ms) / 1000
    return {"seconds": seconds, "psnr": psnr, "shapes": shapes}


def report(found: dict, photo: Path, repeats: int, threads: int, load: tuple[float, float]) -> str:
    med, psnr = found["seconds"], found["psnr"]
    rows = []
    for side in SIDES:
        hayao = {prec: med["animeganv2 hayao", prec, side] for prec in PRECISIONS}
        for model in MODELS:
            fp32, bf16 = med[model, "fp32", side], med[model, PRECISIONS[1], side]
            rows.append(
                (
                    side,
                    model,
                    f"{fp32:.3f}",
                    f"{bf16:.3f}",
                    f"{fp32 / bf16:.2f}x",
                    f"{psnr[model, side]:.1f}",
                    f"{fp32 / hayao['fp32']:.2f}",
                    f"{bf16 / hayao[PRECISIONS[1]]:.2f}",
                )
            )
    header = (
        "longest side | model | fp32 s | bf16+CL s | bf16 speed-up | bf16 PSNR dB | fp32 time / hayao's | "
        "bf16 time / hayao's"
    )
    lines = [
        "# White-box vs AnimeGANv2: cache-miss latency (generator forward only)",
        "",
        f"- Machine: {machine_line()}; {threads} torch threads",
        f"- Load average before/after: {load[0]:.2f} / {load[1]:.2f} (a shared box; variants ran "
        "round-robin)",
        f"- Input: `{photo.name}` scaled to "
        + ", ".join(f"{w}x{h}" for h, w in found["shapes"].values())
        + f" (W x H); median of {repeats} runs after one warm-up; no tiling.",
        "- PSNR: bf16+channels_last output vs fp32 output of the same model, on [-1, 1].",
        "",
        *table(header, rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=weights_dir())
    parser.add_argument("--photo", type=Path, default=photos_dir() / PHOTO)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    found = measure(args.weights_dir, args.photo, args.repeats)
    text = report(found, args.photo, args.repeats, args.threads, (load_before, os.getloadavg()[0]))
    write_result("whitebox.md", text)
    print(text, end="")


if __name__ == "__main__":
    main()
