"""Photos of the kinds the near-duplicate contract is hardest on, generated or license-clean.

`../shared/photos` is faces and daylight scenes. The verifier must also hold on pictures
with little colour or light, with no colour at all, with texture everywhere, and with flat
areas and hard edges. This module provides them without any unlicensed file:

* `tests/data/photos/`: public-domain / CC0 photos from the scikit-image wheel (see its
  ATTRIBUTION.md): a deep-sky photo, a retina, greyscale photos, textures, graphics;
* `generated()`: pictures drawn from a seeded random generator, so every run and every
  machine gets the same pixels: a night sky, a night street, a dim interior, a
  low-colour landscape, coloured texture, a screenshot, a chart (greyscale photos come
  from the licensed set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

DATA = Path(__file__).resolve().parents[1] / "data" / "photos"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def licensed() -> dict[str, Image.Image]:
    """The committed public-domain / CC0 photos, decoded to RGB."""
    return {path.name: Image.open(path).convert("RGB") for path in sorted(DATA.glob("*.[jp][pn]g"))}


def generated() -> dict[str, Image.Image]:
    """Every generated class, by file-like name."""
    return {
        "gen_night_sky.png": night_sky(),
        "gen_night_street.png": night_street(),
        "gen_dim_interior.png": dim_interior(),
        "gen_low_colour.png": low_colour(),
        "gen_colour_texture.png": colour_texture(),
        "gen_screenshot.png": screenshot(),
        "gen_chart.png": chart(),
    }


def _noise(rng: np.random.Generator, shape: tuple[int, int], scales: tuple[int, ...]) -> np.ndarray:
    """Smooth value noise in 0..1: random grids of several sizes, upsampled and summed."""
    h, w = shape
    total = np.zeros(shape, dtype=np.float32)
    for scale in scales:
        grid = rng.random((max(2, h // scale), max(2, w // scale))).astype(np.float32)
        layer = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
        total += np.asarray(layer) / len(scales)
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-6)


def night_sky(size: tuple[int, int] = (1000, 750), seed: int = 1) -> Image.Image:
    """A deep-sky photo: near-black, faint low-colour nebula, small stars of many hues."""
    rng = np.random.default_rng(seed)
    w, h = size
    nebula = _noise(rng, (h, w), (200, 60, 15)) ** 3
    sky = np.zeros((h, w, 3), dtype=np.float32)
    sky += nebula[..., None] * np.array([38, 22, 48], dtype=np.float32)
    sky += rng.normal(4, 2, (h, w, 3)).astype(np.float32)
    image = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    hues = [(255, 210, 160), (170, 200, 255), (255, 140, 120), (255, 255, 235), (150, 255, 200)]
    for _ in range(260):
        x, y = rng.random() * w, rng.random() * h
        r = rng.choice([0.8, 1.2, 1.8, 2.6, 4.0], p=[0.45, 0.3, 0.15, 0.07, 0.03])
        colour = hues[int(rng.integers(len(hues)))]
        dim = 0.35 + 0.65 * rng.random()
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c * dim) for c in colour))
    return image.filter(ImageFilter.GaussianBlur(0.7))


def night_street(size: tuple[int, int] = (1024, 683), seed: int = 2) -> Image.Image:
    """A street at night: dark buildings, lit windows of a few colours, a glowing road."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = Image.new("RGB", size, (8, 9, 16))
    draw = ImageDraw.Draw(image)
    x = 0
    while x < w:
        bw = int(rng.integers(60, 160))
        top = int(h * rng.uniform(0.15, 0.5))
        shade = int(rng.integers(14, 30))
        draw.rectangle((x, top, x + bw, h), fill=(shade, shade, shade + 6))
        for wy in range(top + 10, int(h * 0.8), 22):
            for wx in range(x + 8, x + bw - 12, 18):
                if rng.random() < 0.35:
                    warm = rng.random() < 0.7
                    colour = (230, 180, 90) if warm else (120, 170, 230)
                    level = rng.uniform(0.4, 1.0)
                    draw.rectangle((wx, wy, wx + 8, wy + 11), fill=tuple(int(c * level) for c in colour))
        x += bw + int(rng.integers(2, 12))
    road = Image.new("RGB", (w, h // 5), (60, 40, 25)).filter(ImageFilter.GaussianBlur(20))
    image.paste(road, (0, h - h // 5))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 2.5, (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))


def dim_interior(seed: int = 3) -> Image.Image:
    """A room lit by one lamp: an example photo darkened through a gamma, with sensor noise."""
    rng = np.random.default_rng(seed)
    photo = Image.open(EXAMPLES / "coffee.jpg").convert("RGB")
    values = np.asarray(photo, dtype=np.float32) / 255
    h, w = values.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    lamp = np.exp(-(((xx - 0.7 * w) / w) ** 2 + ((yy - 0.3 * h) / h) ** 2) * 3)[..., None]
    dark = values**2.2 * (0.12 + 0.35 * lamp) * 255 + rng.normal(0, 1.5, values.shape)
    return Image.fromarray(np.clip(dark, 0, 255).astype(np.uint8))


def low_colour(seed: int = 4) -> Image.Image:
    """A hazy, almost colourless landscape: an example photo at 12 % saturation."""
    photo = Image.open(EXAMPLES / "rocket.jpg").convert("RGB")
    return ImageEnhance.Contrast(ImageEnhance.Color(photo).enhance(0.12)).enhance(0.8)


def colour_texture(size: tuple[int, int] = (900, 900), seed: int = 5) -> Image.Image:
    """Foliage-like texture in every cell: fine multi-scale noise in greens and browns."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    fine = _noise(rng, (h, w), (3, 6, 12))
    coarse = _noise(rng, (h, w), (40, 90))
    rgb = np.stack([60 + 120 * fine * coarse, 80 + 140 * fine, 30 + 70 * (1 - coarse) * fine], axis=2)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def screenshot(size: tuple[int, int] = (1280, 800)) -> Image.Image:
    """A desktop app: flat panels, a title bar, buttons and lines of text."""
    image = Image.new("RGB", size, (245, 246, 248))
    draw = ImageDraw.Draw(image)
    w, h = size
    font = _font(18)
    draw.rectangle((0, 0, w, 44), fill=(52, 58, 90))
    draw.text((16, 12), "Quarterly report - Editor", fill=(255, 255, 255), font=font)
    draw.rectangle((0, 44, 220, h), fill=(230, 232, 238))
    for i, label in enumerate(["Inbox", "Drafts", "Sent", "Archive", "Settings"]):
        draw.text((24, 70 + 40 * i), label, fill=(40, 40, 60), font=font)
    for line in range(14):
        y = 80 + 34 * line
        words = "The quick brown fox jumps over the lazy dog " * 2
        draw.text((250, y), words[: 40 + 3 * (line % 5)], fill=(30, 30, 30), font=font)
    for i, (label, colour) in enumerate([("Save", (46, 125, 50)), ("Cancel", (198, 40, 40))]):
        x = w - 260 + 120 * i
        draw.rounded_rectangle((x, h - 70, x + 100, h - 30), radius=8, fill=colour)
        draw.text((x + 22, h - 60), label, fill=(255, 255, 255), font=font)
    return image


def chart(size: tuple[int, int] = (1000, 700)) -> Image.Image:
    """A flat bar chart with axes, gridlines and a legend: hard edges, flat fills."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    w = size[0]
    font = _font(20)
    for i in range(6):
        y = 80 + i * 100
        draw.line((100, y, w - 60, y), fill=(225, 225, 225), width=2)
        draw.text((40, y - 10), str(100 - 20 * i), fill=(90, 90, 90), font=font)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    for i, value in enumerate([62, 85, 40, 71, 93, 55, 30]):
        x = 130 + i * 120
        draw.rectangle((x, 580 - value * 5, x + 80, 580), fill=colours[i % len(colours)])
    draw.line((100, 580, w - 60, 580), fill=(0, 0, 0), width=3)
    draw.line((100, 60, 100, 580), fill=(0, 0, 0), width=3)
    draw.text((w // 2 - 120, 620), "Sales by region", fill=(0, 0, 0), font=font)
    return image


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()
