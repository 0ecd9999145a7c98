"""The photos the tests run on: the shared real photos when present, else a license-clean set.

``../shared/photos`` (or ``ANIMEGAN_PHOTOS_DIR``) holds 40 real photos without a license,
so they can never ship with the project. Without them (a fresh clone) the tests use the
example photos (``examples/*.jpg``, public domain / CC0) plus pictures drawn here into a
session temporary folder: a city street, a landscape, a portrait, a still life, a night
scene, a printed page, shapes, a texture, a colour field and bokeh. Each is drawn from
a fixed seed (numpy's PCG64 and Pillow's drawing), so every run writes the same pixels.

Both sets name the same *roles*, so a test that needs "a street scene" or "a face" gets
the equivalent photo from whichever set is active, and golden values that depend on a
photo are stored once per set (tests/engine/data).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SetName = Literal["shared", "clean"]

#: role -> the shared photo that plays it.
SHARED_ROLES: Mapping[str, str] = {
    "street": "scene_bryandlee_1.jpg",  # a detailed street scene, 1024 x 682
    "street_2": "scene_bryandlee_2.jpg",  # another one, 1024 x 694
    "face": "face_bryandlee_01.jpg",  # a portrait
    "scene": "scene_animeganv3_03.jpg",  # an outdoor scene
    "scene_2": "scene_animeganv3_21.jpg",  # another one
    # the two photos whose tiled output is furthest from the untiled one (of ten measured)
    "tiling_face": "face_bryandlee_05.jpg",
    "tiling_scene": "scene_animeganv3_33.jpg",
}

#: role -> the clean photo that plays it.
CLEAN_ROLES: Mapping[str, str] = {
    "street": "drawn_city.jpg",
    "street_2": "drawn_landscape.jpg",
    "face": "face_astronaut.jpg",
    "scene": "scene_rocket.jpg",
    "scene_2": "scene_coffee.jpg",
    "tiling_face": "face_astronaut.jpg",  # 39 dB tiled vs untiled, the lowest of the set
    "tiling_scene": "drawn_bokeh.jpg",  # 40 dB, the next lowest
}

#: example file -> its name in the clean set (prefixes like the shared set's: face_, scene_).
EXAMPLE_NAMES: Mapping[str, str] = {
    "astronaut.jpg": "face_astronaut.jpg",
    "chelsea_cat.jpg": "scene_chelsea_cat.jpg",
    "coffee.jpg": "scene_coffee.jpg",
    "rocket.jpg": "scene_rocket.jpg",
}


@dataclass(frozen=True)
class PhotoSet:
    """A folder of JPEG photos and which of them plays each role."""

    name: SetName
    directory: Path
    roles: Mapping[str, str]

    @property
    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("*.jpg"))

    def photo(self, role: str) -> Path:
        path = self.directory / self.roles[role]
        if not path.is_file():
            raise FileNotFoundError(f"the {self.name} photo set has no {path.name} ({role})")
        return path


def shared_set(directory: Path) -> PhotoSet:
    return PhotoSet("shared", directory, SHARED_ROLES)


def clean_set(directory: Path, examples: Path) -> PhotoSet:
    """Copy the examples (byte for byte) and draw the generated photos into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for source, name in EXAMPLE_NAMES.items():
        shutil.copyfile(examples / source, directory / name)
    for name, draw in DRAWINGS.items():
        draw(np.random.default_rng(SEEDS[name])).save(directory / name, quality=90)
    return PhotoSet("clean", directory, CLEAN_ROLES)


# -- drawing -------------------------------------------------------------------------------
# Each function paints a scene with flat shapes, then `_camera` adds what makes it behave
# like a photo for the cache and the model: a little optical blur and sensor noise.


def _camera(
    image: Image.Image, rng: np.random.Generator, blur: float = 1.2, noise: float = 4.0
) -> Image.Image:
    soft = np.asarray(image.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    grain = rng.normal(0.0, noise, (*soft.shape[:2], 1)) + rng.normal(0.0, noise / 3, soft.shape)
    return Image.fromarray(np.clip(soft + grain, 0, 255).round().astype(np.uint8))


def _vertical_gradient(size: tuple[int, int], top: tuple[int, ...], bottom: tuple[int, ...]) -> Image.Image:
    width, height = size
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    rows = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return Image.fromarray(np.broadcast_to(rows, (height, width, 3)).astype(np.uint8))


def _colour(rng: np.random.Generator, low: int = 40, high: int = 230) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Value noise in 0..1: a random grid of ``cells`` across, upscaled bicubically."""
    width, height = size
    grid = rng.random((max(2, cells * height // width), cells)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image), 0.0, 1.0)


def draw_city(rng: np.random.Generator) -> Image.Image:
    """A street: sky, buildings with lit windows, a road with lane marks, street lamps."""
    size = (1024, 683)
    image = _vertical_gradient(size, (96, 150, 215), (200, 220, 235))
    draw = ImageDraw.Draw(image)
    x = -20
    while x < size[0]:
        width, height = int(rng.integers(70, 170)), int(rng.integers(180, 430))
        top = 480 - height
        draw.rectangle((x, top, x + width, 480), fill=_colour(rng, 60, 200))
        window = _colour(rng, 150, 255)
        for wy in range(top + 12, 460, 26):
            for wx in range(x + 8, x + width - 14, 20):
                if rng.random() < 0.8:
                    draw.rectangle(
                        (wx, wy, wx + 10, wy + 14), fill=window if rng.random() < 0.6 else (40, 45, 60)
                    )
        x += width + int(rng.integers(2, 18))
    draw.rectangle((0, 480, size[0], size[1]), fill=(70, 70, 76))
    draw.rectangle((0, 470, size[0], 492), fill=(160, 155, 150))
    for lx in range(20, size[0], 120):
        draw.rectangle((lx, 585, lx + 60, 593), fill=(235, 225, 120))
    for px in range(60, size[0], 260):
        draw.rectangle((px, 330, px + 6, 480), fill=(30, 30, 35))
        draw.ellipse((px - 12, 318, px + 18, 340), fill=(255, 240, 190))
    for _ in range(6):  # cars
        cx, cy = int(rng.integers(0, size[0] - 120)), int(rng.integers(500, 640))
        draw.rounded_rectangle((cx, cy, cx + 110, cy + 40), radius=10, fill=_colour(rng))
        draw.ellipse((cx + 12, cy + 30, cx + 34, cy + 52), fill=(20, 20, 20))
        draw.ellipse((cx + 76, cy + 30, cx + 98, cy + 52), fill=(20, 20, 20))
    return _camera(image, rng)


def draw_landscape(rng: np.random.Generator) -> Image.Image:
    """Hills under a sky with a sun and clouds, a lake, trees on a meadow."""
    size = (1024, 694)
    width, height = size
    image = _vertical_gradient(size, (70, 130, 210), (235, 200, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((760, 70, 860, 170), fill=(255, 235, 170))
    for _ in range(5):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(40, 200))
        for dx in range(0, 120, 30):
            draw.ellipse((cx + dx, cy - 20, cx + dx + 70, cy + 30), fill=(245, 245, 250))
    xs = np.arange(0, width + 8, 8)
    for level, colour in ((330, (110, 120, 150)), (390, (70, 120, 80)), (450, (90, 150, 70))):
        phase, amplitude = rng.random() * 6.3, 25 + 35 * rng.random()
        ys = level + amplitude * np.sin(xs / (90 + 80 * rng.random()) + phase)
        draw.polygon([(0, height), *zip(xs.tolist(), ys.tolist(), strict=True), (width, height)], fill=colour)
    draw.ellipse((120, 500, 520, 600), fill=(80, 140, 190))
    for _ in range(14):
        tx, ty = int(rng.integers(0, width)), int(rng.integers(430, 680))
        draw.rectangle((tx - 4, ty, tx + 4, ty + 30), fill=(90, 60, 40))
        draw.ellipse((tx - 26, ty - 50, tx + 26, ty + 8), fill=_colour(rng, 30, 120))
    meadow = np.asarray(image, np.float32)
    meadow[450:] *= 0.85 + 0.3 * _smooth_noise(rng, (width, height - 450), 60)[..., None]
    return _camera(Image.fromarray(np.clip(meadow, 0, 255).astype(np.uint8)), rng)


def draw_portrait(rng: np.random.Generator) -> Image.Image:
    """A face: hair, skin, eyes, brows, nose, mouth, shoulders, on a soft backdrop."""
    size = (420, 460)
    image = _vertical_gradient(size, (150, 170, 190), (90, 100, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse((95, 40, 325, 320), fill=(70, 45, 30))  # hair
    draw.rectangle((40, 380, 380, 460), fill=(60, 90, 150))  # shoulders
    draw.rectangle((180, 300, 240, 390), fill=(225, 180, 150))  # neck
    draw.ellipse((120, 80, 300, 330), fill=(232, 190, 160))  # face
    for ex in (165, 255):
        draw.ellipse((ex - 22, 175, ex + 22, 200), fill=(250, 250, 250))
        draw.ellipse((ex - 9, 179, ex + 9, 197), fill=(60, 100, 60))
        draw.ellipse((ex - 4, 184, ex + 4, 192), fill=(10, 10, 10))
        draw.line((ex - 25, 160, ex + 22, 152), fill=(60, 40, 25), width=6)
    draw.polygon([(210, 200), (196, 250), (222, 252)], fill=(210, 160, 135))
    draw.chord((170, 260, 250, 300), 0, 180, fill=(180, 70, 80))
    return _camera(image, rng, blur=1.5, noise=3.0)


def draw_still_life(rng: np.random.Generator) -> Image.Image:
    """Fruit and a vase on a wooden table against a wall."""
    size = (700, 500)
    image = _vertical_gradient(size, (205, 190, 160), (170, 150, 120))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 330, 700, 500), fill=(120, 75, 40))
    for y in range(340, 500, 14):
        draw.line((0, y, 700, y + int(rng.integers(-4, 5))), fill=(100, 60, 30), width=2)
    draw.rounded_rectangle((470, 120, 580, 350), radius=40, fill=(40, 90, 140))
    draw.ellipse((490, 150, 520, 260), fill=(90, 150, 200))  # highlight
    for colour, box in (
        ((200, 30, 40), (120, 260, 210, 350)),
        ((240, 160, 20), (200, 270, 290, 355)),
        ((90, 160, 40), (280, 280, 350, 350)),
        ((120, 30, 100), (160, 220, 230, 290)),
    ):
        draw.ellipse(box, fill=colour)
        x0, y0, _, _ = box
        draw.ellipse((x0 + 15, y0 + 12, x0 + 35, y0 + 28), fill=tuple(min(255, c + 70) for c in colour))
    return _camera(image, rng)


def draw_night(rng: np.random.Generator) -> Image.Image:
    """A dark scene: dusk sky with stars and a moon, silhouettes, warm lit windows."""
    size = (1024, 640)
    image = _vertical_gradient(size, (10, 20, 60), (70, 40, 75))
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        sx, sy = int(rng.integers(0, size[0])), int(rng.integers(0, 300))
        draw.point((sx, sy), fill=(200, 200, 220))
    draw.ellipse((120, 60, 190, 130), fill=(225, 225, 200))
    x = 0
    while x < size[0]:
        width, height = int(rng.integers(80, 200)), int(rng.integers(120, 330))
        draw.rectangle((x, 640 - height, x + width, 640), fill=(12, 12, 18))
        for wy in range(640 - height + 15, 630, 30):
            for wx in range(x + 10, x + width - 16, 24):
                if rng.random() < 0.25:
                    draw.rectangle((wx, wy, wx + 11, wy + 15), fill=(255, 190, 90))
        x += width + int(rng.integers(0, 10))
    return _camera(image, rng, blur=1.0, noise=3.0)


def draw_page(rng: np.random.Generator) -> Image.Image:
    """Text-like graphics: a printed page with a coloured heading, words and a photo box."""
    size = (640, 480)
    image = Image.new("RGB", size, (244, 238, 222))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 640, 70), fill=(170, 40, 50))
    x = 30
    while x < 560:  # heading "letters"
        w = int(rng.integers(14, 30))
        draw.rectangle((x, 20, x + w, 50), fill=(250, 240, 230))
        x += w + int(rng.integers(6, 20))
    draw.rectangle((400, 100, 610, 250), fill=(60, 120, 160))
    draw.ellipse((430, 130, 520, 220), fill=(230, 200, 80))
    for y in range(100, 450, 22):
        x, right = 30, (380 if y < 260 else 610)
        while x < right - 20:
            w = int(rng.integers(12, 60))
            ink = (20, 20, 30) if rng.random() < 0.9 else (30, 60, 150)
            draw.rectangle((x, y, min(x + w, right), y + 9), fill=ink)
            x += w + 8
    return _camera(image, rng, blur=0.8, noise=3.0)


def draw_shapes(rng: np.random.Generator) -> Image.Image:
    """Overlapping coloured ellipses, rectangles and triangles on a two-tone ground."""
    size = (900, 600)
    image = _vertical_gradient(size, (230, 225, 200), (180, 200, 215))
    draw = ImageDraw.Draw(image)
    for _ in range(45):
        x, y = int(rng.integers(-50, 880)), int(rng.integers(-50, 580))
        w, h = int(rng.integers(30, 200)), int(rng.integers(30, 200))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x, y, x + w, y + h), fill=_colour(rng, 10, 250))
        elif kind == 1:
            draw.rectangle((x, y, x + w, y + h), fill=_colour(rng, 10, 250))
        else:
            draw.polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=_colour(rng, 10, 250))
    return _camera(image, rng)


def draw_texture(rng: np.random.Generator) -> Image.Image:
    """A natural texture: several octaves of value noise, coloured like lichen on stone."""
    size = (768, 768)
    field = sum(_smooth_noise(rng, size, cells) / weight for cells, weight in ((6, 1), (24, 2), (96, 4)))
    field = (field - field.min()) / (field.max() - field.min())
    stone = np.array([120, 115, 105], np.float32)
    lichen = np.array([190, 170, 60], np.float32)
    moss = np.array([60, 110, 50], np.float32)
    t = field[..., None]
    rgb = np.where(t < 0.5, stone + (moss - stone) * (t / 0.5), moss + (lichen - moss) * ((t - 0.5) / 0.5))
    return _camera(Image.fromarray(rgb.astype(np.uint8)), rng, blur=0.6)


def draw_colour_field(rng: np.random.Generator) -> Image.Image:
    """Smooth colour: four coloured light sources blended over the frame (a sunset wall)."""
    width, height = 800, 600
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.zeros((height, width, 3), np.float32)
    for _ in range(4):
        cx, cy = rng.random() * width, rng.random() * height
        spread = 150 + 250 * rng.random()
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * spread**2))
        rgb += weight[..., None] * np.array(_colour(rng, 20, 255), np.float32)
    rgb = 255 * rgb / rgb.max()
    return _camera(Image.fromarray(rgb.astype(np.uint8)), rng, blur=0.5)


def draw_bokeh(rng: np.random.Generator) -> Image.Image:
    """Out-of-focus city lights: soft, translucent discs over a dusky background."""
    size = (800, 533)
    base = _vertical_gradient(size, (40, 30, 70), (90, 50, 60))
    light = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(light)
    for _ in range(60):
        x, y, r = int(rng.integers(0, 800)), int(rng.integers(0, 533)), int(rng.integers(10, 45))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_colour(rng, 60, 255))
    glow = np.asarray(light.filter(ImageFilter.GaussianBlur(6)), np.float32) * 0.7
    rgb = np.clip(np.asarray(base, np.float32) + glow, 0, 255).astype(np.uint8)
    return _camera(Image.fromarray(rgb), rng, blur=0.8)


DRAWINGS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "drawn_city.jpg": draw_city,
    "drawn_landscape.jpg": draw_landscape,
    "face_drawn.jpg": draw_portrait,
    "drawn_still_life.jpg": draw_still_life,
    "drawn_night.jpg": draw_night,
    "drawn_page.jpg": draw_page,
    "drawn_shapes.jpg": draw_shapes,
    "drawn_texture.jpg": draw_texture,
    "drawn_colour_field.jpg": draw_colour_field,
    "drawn_bokeh.jpg": draw_bokeh,
}
SEEDS = {name: 1000 + index for index, name in enumerate(DRAWINGS)}
