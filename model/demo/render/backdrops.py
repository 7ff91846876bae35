"""Busier backgrounds for the training data's domain randomization: photo-like clutter, tiles, blotches,
and a lighting overlay (vignette or a light gradient) over any background. numpy + cv2 only.

Everything here is static over a video: it never moves, so it never carries an action; the model
has to learn to look past it.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("clutter", "tiles", "blotches")


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0.0, 255.0, size=3))


def clutter(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """Photo-like: many static things (boxes, discs, bars, polygons) over ``base``, softened by a
    depth-of-field blur. float32 ``(H, W, 3)``."""
    image = base.astype(np.float32).copy()
    height, width = image.shape[:2]
    scale = float(min(width, height))
    for _ in range(int(rng.integers(8, 40))):
        layer = image.copy()
        kind = rng.integers(0, 4)
        cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        size = rng.uniform(0.03, 0.35) * scale
        if kind == 0:
            cv2.rectangle(layer, (int(cx - size), int(cy - size * rng.uniform(0.2, 1.5))),
                          (int(cx + size * rng.uniform(0.2, 1.5)), int(cy + size)), _colour(rng), -1)
        elif kind == 1:
            cv2.ellipse(layer, (int(cx), int(cy)), (max(1, int(size)), max(1, int(size * rng.uniform(0.3, 1.0)))),
                        float(rng.uniform(0, 180)), 0, 360, _colour(rng), -1, cv2.LINE_AA)
        elif kind == 2:
            end = (int(cx + rng.normal(0, size * 2)), int(cy + rng.normal(0, size * 2)))
            cv2.line(layer, (int(cx), int(cy)), end, _colour(rng), max(1, int(size * 0.15)), cv2.LINE_AA)
        else:
            pts = (np.array([cx, cy]) + rng.normal(0, size, size=(int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(layer, [pts], _colour(rng), cv2.LINE_AA)
        alpha = float(rng.uniform(0.4, 1.0))
        image = cv2.addWeighted(layer, alpha, image, 1.0 - alpha, 0.0)
    sigma = float(rng.uniform(0.0, 2.0)) * scale / 120.0
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


def tiles(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A grid of tiles or bricks in a few colours with grout lines, maybe at a slant."""
    height, width = base.shape[:2]
    scale = float(min(width, height))
    cell_w, cell_h = rng.uniform(0.06, 0.3, size=2) * scale
    palette = rng.uniform(0.0, 255.0, size=(int(rng.integers(2, 6)), 3)).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = float(rng.choice([0.0, rng.uniform(-0.5, 0.5)]))
    u = xs * np.cos(angle) + ys * np.sin(angle)
    v = -xs * np.sin(angle) + ys * np.cos(angle)
    row = np.floor(v / cell_h)
    shift = (row % 2) * cell_w * float(rng.choice([0.0, 0.5]))  # bricks: every other row shifted
    col = np.floor((u + shift) / cell_w)
    index = ((row * 7919 + col * 104729 + rng.integers(0, 1000)) % len(palette)).astype(np.int64)
    image = palette[index]  # (H, W, 3)
    grout = float(rng.uniform(0.03, 0.15))
    edge = (np.minimum((u + shift) / cell_w % 1.0, v / cell_h % 1.0) < grout)
    image[edge] = np.float32(rng.uniform(0.0, 255.0, size=3))
    return image + rng.normal(0.0, rng.uniform(0.0, 8.0), size=image.shape).astype(np.float32)


def blotches(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """Soft out-of-focus discs (bokeh) over ``base``."""
    image = base.astype(np.float32).copy()
    height, width = image.shape[:2]
    scale = float(min(width, height))
    for _ in range(int(rng.integers(5, 25))):
        layer = np.zeros((height, width), np.float32)
        radius = max(1, int(rng.uniform(0.03, 0.25) * scale))
        cv2.circle(layer, (int(rng.uniform(0, width)), int(rng.uniform(0, height))), radius, 1.0, -1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), radius * rng.uniform(0.1, 0.6))[..., None]
        image = image * (1.0 - 0.8 * layer) + 0.8 * layer * np.float32(_colour(rng))
    return image


def lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A vignette or a light falling off across the frame, multiplied in. float32 ``(H, W, 3)``."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.uniform() < 0.5:
        r = np.hypot((xs - width / 2) / width, (ys - height / 2) / height) * 2.0
        gain = 1.0 - rng.uniform(0.2, 0.7) * np.clip(r, 0.0, 1.5) ** 2
    else:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        proj = (xs * np.cos(angle) + ys * np.sin(angle)) / max(width, height)
        gain = 1.0 + rng.uniform(0.2, 0.7) * (proj - proj.mean())
    return image * np.clip(gain, 0.1, 2.0)[..., None]


EXTRA = {"clutter": clutter, "tiles": tiles, "blotches": blotches}
