"""Realistic held-out data for the field models of the `test` extra, made from files that installed packages ship.

- faces: matplotlib's sample portrait (grace_hopper.jpg) scaled, flipped and pasted onto crops of
  scikit-learn's two sample photos (china.jpg, flower.jpg), as the YOLOv8n of nudenet sees them
  (padded to a square at the bottom/right, resized to 320x320, RGB / 255);
- text lines: words rendered with matplotlib's DejaVu fonts, as PP-OCRv4 rec sees them (48 high,
  padded to 320 wide, (x/255 - 0.5) / 0.5), with the strings they show;
- text pages: a few such lines on a light page, as PP-OCRv4 det sees them.

Every generator is deterministic in its seed; different seeds give disjoint samples (calibration vs held-out).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ["invoice", "total", "amount", "date", "order", "number", "customer", "street", "city", "north", "south", "station", "river", "bridge", "market", "garden", "window", "coffee", "paper", "music", "engine", "signal", "delta", "orbit", "copper", "silver", "forest", "harbor", "island", "lemon", "yellow", "purple", "seven", "eleven", "twenty", "ninety", "metric", "kernel", "tensor", "device", "fleet", "robot", "camera", "sensor"]


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        import pytest

        pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / relative


def _font_files() -> list[Path]:
    folder = package_file("matplotlib", "mpl-data/fonts/ttf")
    return sorted(folder / name for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"))


def _backgrounds() -> list[Image.Image]:
    folder = package_file("sklearn", "datasets/images")
    return [Image.open(folder / name).convert("RGB") for name in ("china.jpg", "flower.jpg")]


def face_images(count: int, seed: int) -> list[Image.Image]:
    """Photos with one or two faces: the portrait pasted at random scales and places onto background crops."""
    rng = np.random.default_rng(seed)
    portrait = Image.open(package_file("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")).convert("RGB")
    backgrounds = _backgrounds()
    images = []
    for _ in range(count):
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        width, height = int(rng.integers(360, 560)), int(rng.integers(300, 420))
        left, top = int(rng.integers(0, background.width - width)), int(rng.integers(0, background.height - height))
        canvas = background.crop((left, top, left + width, top + height))
        for _ in range(int(rng.integers(1, 3))):
            size = int(rng.integers(int(0.35 * height), int(0.8 * height)))
            face = portrait.resize((int(size * portrait.width / portrait.height), size), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                face = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            x, y = int(rng.integers(0, max(width - face.width, 1))), int(rng.integers(0, max(height - face.height, 1)))
            canvas.paste(face, (x, y))
        images.append(canvas)
    return images


def letterbox_square(image: Image.Image, size: int = 320) -> np.ndarray:
    """nudenet's own preprocessing: pad bottom/right to a square with black, resize, RGB / 255, CHW float32."""
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image, (0, 0))
    pixels = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _text(rng: np.random.Generator) -> str:
    words = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=int(rng.integers(1, 3)))]
    if rng.random() < 0.5:
        words.append(str(int(rng.integers(10, 99999))))
    return " ".join(words)


def _render_line(text: str, rng: np.random.Generator, fonts: list[Path]) -> Image.Image:
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(26, 34)))
    ink = tuple(int(v) for v in rng.integers(0, 70, 3))
    paper = tuple(int(v) for v in rng.integers(190, 255, 3))
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 16, 48), paper)
    ImageDraw.Draw(image).text((8 - left, (48 - (bottom - top)) // 2 - top), text, font=font, fill=ink)
    return image


def text_lines(count: int, seed: int, width: int = 320) -> tuple[np.ndarray, list[str]]:
    """PP-OCRv4 rec inputs [N, 3, 48, width] and the strings they show (lines wider than ``width`` are shrunk)."""
    rng = np.random.default_rng(seed)
    fonts = _font_files()
    batch, strings = np.zeros((count, 3, 48, width), np.float32), []
    for index in range(count):
        text = _text(rng)
        line = _render_line(text, rng, fonts)
        if line.width > width:
            line = line.resize((width, 48), Image.Resampling.BILINEAR)
        pixels = (np.asarray(line, np.float32) / 255.0 - 0.5) / 0.5
        batch[index, :, :, : line.width] = pixels.transpose(2, 0, 1)
        strings.append(text)
    return batch, strings


def text_pages(count: int, seed: int, size: tuple[int, int] = (320, 320)) -> np.ndarray:
    """PP-OCRv4 det inputs [N, 3, H, W]: three to five text lines on a page, normalised as for rec."""
    rng = np.random.default_rng(seed)
    fonts = _font_files()
    height, width = size
    batch = np.zeros((count, 3, height, width), np.float32)
    for index in range(count):
        page = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 255, 3)))
        y = int(rng.integers(4, 30))
        while y < height - 48:
            line = _render_line(_text(rng), rng, fonts)
            if line.width > width - 8:
                line = line.crop((0, 0, width - 8, 48))
            page.paste(line, (int(rng.integers(0, width - line.width + 1)), y))
            y += 48 + int(rng.integers(8, 40))
        batch[index] = ((np.asarray(page, np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return batch
