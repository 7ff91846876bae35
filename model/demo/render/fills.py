"""How a shape is painted, beyond a flat colour: gradients, textures and outlines that move with the shape.

A pattern is a function of the shape's own coordinates (``u``: the pixel, un-rotated and divided by
the radius), so it turns, moves and scales with the shape as paint on a real object would.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("solid", "gradient", "texture", "outline", "bordered")
_SHIFT = 4


@dataclass(frozen=True)
class Style:
    kind: str
    colour: np.ndarray  # float32 (3,)
    second: np.ndarray  # gradient end, texture's other colour, or border colour
    pattern: tuple[str, float, float]  # texture: (stripes|checker|rings, frequency, angle)
    line: float  # outline / border width, in units of the shape's radius
    antialias: bool


def random_style(rng: np.random.Generator, kind: str, colour: np.ndarray, second: np.ndarray,
                 aliased: float) -> Style:
    pattern = (str(rng.choice(("stripes", "checker", "rings"))), float(rng.uniform(1.5, 5.0)),
               float(rng.uniform(0.0, np.pi)))
    return Style(kind, colour, second, pattern, float(rng.uniform(0.08, 0.25)), bool(rng.uniform() >= aliased))


def _shape_coords(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, radius: float, theta_deg: float):
    """Pixel grids -> the shape's own (u, v): un-rotated, over the radius."""
    t = np.radians(theta_deg)
    dx, dy = (xs - cx) / radius, (ys - cy) / radius
    return dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)


def _field(style: Style, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the second colour shows, in [0, 1]."""
    if style.kind == "gradient":
        return np.clip(0.5 + 0.5 * u, 0.0, 1.0)
    name, freq, angle = style.pattern
    a = u * np.cos(angle) + v * np.sin(angle)
    if name == "stripes":
        return (np.sin(np.pi * freq * a) > 0).astype(np.float32)
    if name == "checker":
        b = -u * np.sin(angle) + v * np.cos(angle)
        return ((np.floor(freq * a) + np.floor(freq * b)) % 2).astype(np.float32)
    return (np.sin(np.pi * freq * np.hypot(u + 0.3, v)) > 0).astype(np.float32)  # rings, off centre


def paint(image: np.ndarray, points: np.ndarray, centre: tuple[float, float], radius: float, theta: float,
          style: Style) -> None:
    """Paint one shape (outline ``points`` in pixels) on uint8 ``image`` in place."""
    line_type = cv2.LINE_AA if style.antialias else cv2.LINE_8
    fixed = np.round(points * (1 << _SHIFT)).astype(np.int32)[None]  # (1, P, 2)
    width = max(1, int(round(style.line * radius)))
    if style.kind == "outline":
        cv2.polylines(image, fixed, True, tuple(float(c) for c in style.colour), width, line_type, _SHIFT)
        return
    if style.kind in ("solid", "bordered"):
        cv2.fillPoly(image, fixed, tuple(float(c) for c in style.colour), line_type, _SHIFT)
    else:
        _pattern_fill(image, fixed, centre, radius, theta, style, line_type)
    if style.kind == "bordered":
        cv2.polylines(image, fixed, True, tuple(float(c) for c in style.second), width, line_type, _SHIFT)


def _pattern_fill(image: np.ndarray, fixed: np.ndarray, centre: tuple[float, float], radius: float, theta: float,
                  style: Style, line_type: int) -> None:
    height, width = image.shape[:2]
    x0, y0, w, h = cv2.boundingRect(fixed[0] >> _SHIFT)
    x0, y0 = max(x0 - 2, 0), max(y0 - 2, 0)
    x1, y1 = min(x0 + w + 4, width), min(y0 + h + 4, height)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, fixed - np.array([x0, y0], np.int32) * (1 << _SHIFT), 255, line_type, _SHIFT)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u, v = _shape_coords(xs, ys, centre[0], centre[1], radius, theta)
    f = _field(style, u, v)[..., None]
    paint_rgb = style.colour[None, None, :] * (1.0 - f) + style.second[None, None, :] * f
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(region * (1.0 - alpha) + paint_rgb * alpha, 0, 255).astype(np.uint8)
