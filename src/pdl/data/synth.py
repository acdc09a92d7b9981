"""A deterministic set of photo-like JPEGs: smooth gradients, shapes, mild noise, sizes around 500×375."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from .folder import scan

DEFAULT_CLASSES = 8
DEFAULT_PER_CLASS = 64


def synth_image(rng: np.random.Generator, hue: float) -> np.ndarray:
    """One RGB image: a two-colour gradient, a few blurred shapes and sensor-like noise."""
    w = int(np.clip(rng.normal(500, 90), 240, 800))
    h = int(np.clip(w * rng.choice([0.75, 0.66, 1.0, 1.33]) * rng.uniform(0.9, 1.1), 180, 800))
    base = np.array(_hsv_to_rgb(hue, rng.uniform(0.3, 0.7), rng.uniform(0.5, 0.9)))
    other = np.array(_hsv_to_rgb((hue + rng.uniform(0.1, 0.4)) % 1, rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.8)))
    angle = rng.uniform(0, np.pi)
    xs = np.linspace(0, np.cos(angle), w, dtype=np.float32)[None, :]
    ys = np.linspace(0, np.sin(angle), h, dtype=np.float32)[:, None]
    t = ((xs + ys + 1) / 2)[..., None]
    base32, delta = base.astype(np.float32), (other - base).astype(np.float32)
    img = (base32 + delta * t).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(min(w, h) // 12, min(w, h) // 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(img, (cx, cy), size, colour, -1, lineType=cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        else:
            axes = (size, max(1, size // 2))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.8, 2.5)))
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2, 6))
    out: np.ndarray = np.clip(img + noise, 0, 255).astype(np.uint8)
    return out


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    hsv = np.array([[[h * 180, s * 255, v * 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return float(r), float(g), float(b)


def generate(
    out: Path,
    classes: int = DEFAULT_CLASSES,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``classes × per_class`` JPEGs under ``out/class_XXX/``; returns how many.

    Written into a temporary folder first and moved into place class by class, so an interrupted run leaves
    no half-written image behind. Refuses to write over images already there.
    """
    if classes < 1 or per_class < 1:
        raise ConfigError(f"--classes and --per-class must be at least 1, got {classes} and {per_class}")
    out.mkdir(parents=True, exist_ok=True)
    existing = [f"class_{c:03d}" for c in range(classes) if (out / f"class_{c:03d}").exists()]
    if existing:
        raise ConfigError(f"'{out / existing[0]}' already exists; choose an empty --out folder or remove it first")
    total, done = classes * per_class, 0
    tmp = Path(tempfile.mkdtemp(prefix=".pdl-inputs-", dir=out))
    try:
        for c in range(classes):
            folder = tmp / f"class_{c:03d}"
            folder.mkdir()
            hue = (c * 0.618034) % 1.0
            for i in range(per_class):
                rng = np.random.default_rng([seed, c, i])
                rgb = synth_image(rng, hue)
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
                assert ok
                buf.tofile(str(folder / f"{i:05d}.jpg"))
                done += 1
                if progress:
                    progress(done, total)
            folder.rename(out / folder.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return total


def has_images(folder: Path) -> bool:
    return folder.is_dir() and bool(scan(folder))
