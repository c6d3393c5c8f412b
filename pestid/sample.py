"""pestid's own sample data: small synthetic field photos, made by code.

Each class has a distinct look (planthoppers are small brown bodies on rice
stems, snails are yellow-brown whorls, blast shows grey diamond lesions on
leaves, healthy rice is only leaves). Every original is saved with a few
augmented copies (flips, 90° turns, brightness, re-encoding), so the sample
has near-duplicate groups exactly like the real sources, and a split that
ignores them leaks.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

SAMPLE_CLASSES = ("brown_planthopper", "green_leafhopper", "golden_apple_snail", "rice_blast", "healthy_rice")
# Drawn too, but not in the default sample: a class the sample model does not know, for officers to teach it.
EXTRA_CLASSES = ("rice_bug",)


def _background(rng: random.Random, size: int) -> Image.Image:
    base = np.zeros((size, size, 3), dtype=np.float32)
    base[:] = (rng.uniform(60, 110), rng.uniform(110, 160), rng.uniform(40, 80))
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 12, (size, size, 1))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(4, 8)):  # rice leaves and stems
        x = rng.uniform(0, size)
        green = (rng.randint(40, 90), rng.randint(120, 190), rng.randint(30, 70))
        draw.line([(x, size), (x + rng.uniform(-size / 3, size / 3), 0)], fill=green, width=rng.randint(3, 8))
    return image


def _draw_subject(label: str, image: Image.Image, rng: random.Random) -> None:
    draw = ImageDraw.Draw(image)
    s = image.width
    if label in ("brown_planthopper", "green_leafhopper"):
        body = (rng.randint(110, 150), rng.randint(70, 95), rng.randint(30, 50))
        if label == "green_leafhopper":
            body = (rng.randint(120, 170), rng.randint(200, 235), rng.randint(60, 110))
        for _ in range(rng.randint(2, 5)):
            x, y = rng.uniform(0.15, 0.8) * s, rng.uniform(0.15, 0.8) * s
            w, h = s * rng.uniform(0.08, 0.12), s * rng.uniform(0.18, 0.26)
            draw.ellipse([x, y, x + w, y + h], fill=body, outline=(30, 20, 10))
            if label == "green_leafhopper":  # the black tail tips
                draw.ellipse([x + w * 0.2, y + h * 0.8, x + w * 0.8, y + h], fill=(10, 10, 10))
    elif label == "golden_apple_snail":
        cx, cy, r = rng.uniform(0.35, 0.65) * s, rng.uniform(0.35, 0.65) * s, s * rng.uniform(0.2, 0.3)
        shell = (rng.randint(180, 220), rng.randint(140, 170), rng.randint(40, 70))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=shell, outline=(90, 60, 20), width=2)
        for k in range(1, 4):
            rr = r * k / 4
            draw.arc([cx - rr, cy - rr, cx + rr, cy + rr], 0, 300, fill=(110, 70, 20), width=2)
        for _ in range(rng.randint(0, 6)):  # pink egg masses
            ex, ey = rng.uniform(0, s), rng.uniform(0, s * 0.3)
            draw.ellipse([ex, ey, ex + 6, ey + 6], fill=(240, 120, 170))
    elif label == "rice_blast":
        for _ in range(rng.randint(3, 7)):
            x, y = rng.uniform(0.1, 0.9) * s, rng.uniform(0.1, 0.9) * s
            w, h = s * rng.uniform(0.04, 0.07), s * rng.uniform(0.12, 0.2)
            diamond = [(x, y - h / 2), (x + w / 2, y), (x, y + h / 2), (x - w / 2, y)]
            draw.polygon(diamond, fill=(170, 165, 150), outline=(110, 60, 30))
    elif label == "rice_bug":
        for _ in range(rng.randint(2, 3)):
            _draw_rice_bug(draw, rng, s)


def _draw_rice_bug(draw: ImageDraw.ImageDraw, rng: random.Random, s: int) -> None:
    """A slender yellow-brown bug lying at an angle, with long legs and antennae (Leptocorisa on the panicle)."""
    x, y = rng.uniform(0.25, 0.75) * s, rng.uniform(0.25, 0.75) * s
    angle = rng.uniform(0, np.pi)
    length, width = s * rng.uniform(0.38, 0.5), s * rng.uniform(0.08, 0.11)
    ux, uy, nx, ny = np.cos(angle), np.sin(angle), -np.sin(angle), np.cos(angle)

    def at(along: float, across: float) -> tuple[float, float]:
        return x + ux * along * length + nx * across * width, y + uy * along * length + ny * across * width

    dark = (rng.randint(60, 90), rng.randint(40, 60), rng.randint(10, 30))
    for along in (-0.2, 0.0, 0.2):  # three pairs of legs
        for side in (-1, 1):
            draw.line([at(along, 0), at(along - 0.12, side * 1.6)], fill=dark, width=1)
    for side in (-1, 1):  # antennae longer than half the body
        draw.line([at(0.5, 0), at(0.85, side * 1.3)], fill=dark, width=1)
    body = [at(-0.5, 0), at(-0.2, 0.5), at(0.4, 0.5), at(0.5, 0), at(0.4, -0.5), at(-0.2, -0.5)]
    draw.polygon(body, fill=(rng.randint(190, 220), rng.randint(160, 190), rng.randint(60, 90)), outline=dark)


def make_original(label: str, rng: random.Random, size: int = 128) -> Image.Image:
    image = _background(rng, size)
    _draw_subject(label, image, rng)
    return image


def augmented_copy(image: Image.Image, rng: random.Random) -> Image.Image:
    """A near-duplicate as the public sources make them: flips, turns, light and re-encoding."""
    out = image
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = out.rotate(90 * rng.randint(0, 3))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=rng.randint(70, 92))
    return Image.open(buffer).convert("RGB")


def write_sample(
    out: str | Path,
    *,
    classes: tuple[str, ...] = SAMPLE_CLASSES,
    originals: int = 12,
    copies: int = 3,
    size: int = 128,
    seed: int = 0,
) -> list[Path]:
    """Write a folder-per-class sample dataset; returns the files written."""
    rng = random.Random(seed)
    out = Path(out)
    written: list[Path] = []
    for label in classes:
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(originals):
            original = make_original(label, rng, size)
            for c, image in enumerate([original, *(augmented_copy(original, rng) for _ in range(copies))]):
                path = folder / f"{label}-{k:03d}-{c}.jpg"
                image.save(path, format="JPEG", quality=90)
                written.append(path)
    return written


UNRELATED_KINDS = ("sky", "document", "face", "road", "poster")


def make_unrelated(kind: str, rng: random.Random, size: int = 128) -> Image.Image:
    """A photo of something that is not rice: what a farmer may send by mistake.

    Used to measure out-of-distribution rejection (AUROC of the confidence).
    """
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    if kind == "sky":
        draw.rectangle([0, 0, size, size], fill=(rng.randint(90, 140), rng.randint(150, 190), rng.randint(220, 255)))
        for _ in range(rng.randint(2, 5)):
            x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 10, size / 4)
            draw.ellipse([x - r, y - r / 2, x + r, y + r / 2], fill=(245, 245, 250))
    elif kind == "document":
        draw.rectangle([0, 0, size, size], fill=(rng.randint(225, 250),) * 3)
        for y in range(8, size - 8, rng.randint(7, 11)):
            draw.line([(8, y), (rng.uniform(size * 0.4, size - 8), y)], fill=(30, 30, 30), width=2)
    elif kind == "face":
        draw.rectangle([0, 0, size, size], fill=(rng.randint(150, 220), rng.randint(150, 200), rng.randint(140, 190)))
        skin = (rng.randint(190, 235), rng.randint(150, 190), rng.randint(120, 160))
        draw.ellipse([size * 0.25, size * 0.15, size * 0.75, size * 0.85], fill=skin)
        for ex in (0.4, 0.6):
            draw.ellipse([size * ex - 4, size * 0.42 - 3, size * ex + 4, size * 0.42 + 3], fill=(30, 20, 20))
        draw.arc([size * 0.4, size * 0.55, size * 0.6, size * 0.7], 20, 160, fill=(120, 40, 40), width=2)
    elif kind == "road":
        grey = np.random.default_rng(rng.randrange(1 << 30)).normal(rng.uniform(80, 120), 15, (size, size, 1))
        image = Image.fromarray(np.clip(np.repeat(grey, 3, axis=2), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for y in range(0, size, 24):
            draw.rectangle([size / 2 - 3, y, size / 2 + 3, y + 12], fill=(240, 240, 240))
    else:  # poster: bold blocks of colour
        for _ in range(6):
            x0, y0 = rng.uniform(0, size), rng.uniform(0, size)
            colour = (rng.randint(0, 255), rng.randint(0, 60), rng.randint(100, 255))
            draw.rectangle([x0, y0, x0 + rng.uniform(20, 70), y0 + rng.uniform(20, 70)], fill=colour)
    return image


def unrelated_images(count: int, *, size: int = 128, seed: int = 0) -> list[Image.Image]:
    rng = random.Random(seed)
    return [make_unrelated(UNRELATED_KINDS[k % len(UNRELATED_KINDS)], rng, size) for k in range(count)]
