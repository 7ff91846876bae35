"""How a synthetic scene looks: backgrounds, colours and shape outlines (numpy + cv2 only)."""

from __future__ import annotations

import cv2
import numpy as np

from model.demo.render import backdrops

_ELLIPSE_POINTS = 48


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random 8-bit colour as float32 ``(3,)``."""
    return rng.uniform(0.0, 255.0, size=3).astype(np.float32)


def contrasting_colour(rng: np.random.Generator, against: np.ndarray, min_contrast: float) -> np.ndarray:
    """A random colour at least ``min_contrast`` (RGB distance) away from ``against``, best of 32 tries."""
    best, best_dist = None, -1.0
    for _ in range(32):
        colour = random_colour(rng)
        dist = float(np.linalg.norm(colour - against))
        if dist >= min_contrast:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _smooth_field(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled smoothly, float32 ``(H, W)``."""
    grid_w = max(2, cells)
    grid_h = max(2, int(round(cells * height / max(width, 1))))
    grid = rng.uniform(0.0, 1.0, size=(grid_h, grid_w)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _blend(field: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Mix two colours by a ``(H, W)`` field in [0, 1] -> float32 ``(H, W, 3)``."""
    f = field[..., None]  # (H, W, 1)
    return first[None, None, :] * (1.0 - f) + second[None, None, :] * f


def background(rng: np.random.Generator, kind: str, width: int, height: int) -> np.ndarray:
    """A static background image, uint8 ``(H, W, 3)``."""
    first, second = random_colour(rng), random_colour(rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    scale = float(min(width, height))
    if kind == "solid":
        image = np.broadcast_to(first, (height, width, 3)).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        proj = xs * np.cos(angle) + ys * np.sin(angle)
        field = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        image = _blend(field, first, second)
    elif kind == "texture":
        field = _smooth_field(rng, width, height, int(rng.integers(3, 24)))
        field = 0.7 * field + 0.3 * _smooth_field(rng, width, height, int(rng.integers(16, 64)))
        image = _blend(field, first, second)
    elif kind == "noise":
        sigma = rng.uniform(8.0, 40.0)
        image = first[None, None, :] + rng.normal(0.0, sigma, size=(height, width, 3)).astype(np.float32)
    elif kind == "stripes":
        angle = rng.uniform(0.0, np.pi)
        period = rng.uniform(0.04, 0.3) * scale
        proj = xs * np.cos(angle) + ys * np.sin(angle)
        image = _blend((np.sin(2.0 * np.pi * proj / period) > 0).astype(np.float32), first, second)
    elif kind == "checker":
        cell = rng.uniform(0.04, 0.25) * scale
        field = ((np.floor(xs / cell) + np.floor(ys / cell)) % 2).astype(np.float32)
        image = _blend(field, first, second)
    elif kind == "radial":
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        dist = np.hypot(xs - cx, ys - cy)
        image = _blend(dist / max(float(dist.max()), 1e-6), first, second)
    elif kind in backdrops.EXTRA:  # over a smooth two-colour base
        field = _smooth_field(rng, width, height, int(rng.integers(2, 12)))
        image = backdrops.EXTRA[kind](rng, _blend(field, first, second))
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(image, 0.0, 255.0).astype(np.uint8)


def outline(rng: np.random.Generator, kind: str, aspect_range: tuple[float, float]) -> np.ndarray:
    """A shape's outline, float32 ``(P, 2)`` centred on 0 with circumradius 1 (x right, y down)."""
    aspect = rng.uniform(*aspect_range)
    if kind == "rectangle":
        half_w, half_h = aspect, 1.0
        pts = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    elif kind == "ellipse":
        t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_POINTS, endpoint=False)
        pts = np.stack([aspect * np.cos(t), np.sin(t)], axis=1)
    elif kind == "triangle":
        # Three corners spread round the circle, at least 70 degrees apart, so it is never a sliver.
        while True:
            angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=3))
            gaps = np.diff(np.concatenate([angles, angles[:1] + 2.0 * np.pi]))
            if gaps.min() > np.radians(70.0):
                break
        pts = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    elif kind == "pentagon":
        t = np.linspace(0.0, 2.0 * np.pi, 5, endpoint=False) + rng.uniform(0, np.pi)
        radii = rng.uniform(0.75, 1.0, size=5)  # irregular, so rotation is never a symmetry
        pts = np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)
    elif kind == "star":
        points = int(rng.integers(4, 7))
        t = np.linspace(0.0, 2.0 * np.pi, 2 * points, endpoint=False)
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.35, 0.6))
        pts = np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)
    elif kind == "blob":
        t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_POINTS, endpoint=False)
        radii = 1.0 + 0.25 * np.sin(2 * t + rng.uniform(0, 6.3)) + 0.15 * np.sin(3 * t + rng.uniform(0, 6.3))
        pts = np.stack([aspect * radii * np.cos(t), radii * np.sin(t)], axis=1)
    elif kind in _POLYGONS:  # fixed asymmetric polygons, stretched by the aspect ratio
        pts = np.array(_POLYGONS[kind], dtype=np.float64) * np.array([aspect, 1.0])
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    pts = pts - pts.mean(axis=0, keepdims=True)
    pts = pts / np.linalg.norm(pts, axis=1).max()  # circumradius 1
    return pts.astype(np.float32)


_POLYGONS = {  # unit outlines, x right, y down
    "arrow": ((-1.0, -0.3), (0.2, -0.3), (0.2, -0.8), (1.0, 0.0), (0.2, 0.8), (0.2, 0.3), (-1.0, 0.3)),
    "lshape": ((-1.0, -1.0), (-0.2, -1.0), (-0.2, 0.3), (1.0, 0.3), (1.0, 1.0), (-1.0, 1.0)),
    "trapezoid": ((-1.0, 0.6), (1.0, 0.6), (0.45, -0.6), (-0.6, -0.6)),
}
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn with 1/16 pixel precision


def draw_polygon(image: np.ndarray, points: np.ndarray, colour: np.ndarray) -> None:
    """Fill ``points`` (float ``(P, 2)`` pixel coordinates) on ``image`` in place, anti-aliased."""
    fixed = np.round(points * (1 << _SHIFT)).astype(np.int32)[None]  # (1, P, 2)
    cv2.fillPoly(image, fixed, tuple(float(c) for c in colour), lineType=cv2.LINE_AA, shift=_SHIFT)


def place(unit: np.ndarray, cx: float, cy: float, radius: float, theta_deg: float) -> np.ndarray:
    """Outline in pixels: rotate by ``theta`` (positive = clockwise on screen), scale, translate."""
    theta = np.radians(theta_deg)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s], [s, c]], dtype=np.float32)  # y points down, so +theta turns clockwise
    return unit @ rot.T * radius + np.array([cx, cy], dtype=np.float32)
