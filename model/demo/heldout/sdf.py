"""Held-out renderer "sdf": shapes as signed distance fields with analytic anti-aliasing, lit from the
top left, with a dark rim and a soft drop shadow, over paper, wood, sky or plaid. numpy only for the
drawing (cv2 just blurs the shadow). Not used for training: it scores how the demo model generalizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.demo.heldout.timeline import Pose, Timeline

KINDS = ("box", "oval", "wedge")
GROUNDS = ("paper", "wood", "sky", "plaid")


@dataclass(frozen=True)
class Body:
    kind: str
    aspect: float
    corner: float  # box corner radius, in units of the circumradius
    wedge: np.ndarray  # (3, 2) triangle corners at circumradius 1
    fill: np.ndarray  # float32 BGR
    rim: np.ndarray


def _sdf(body: Body, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (< 0 inside) in units of the circumradius, at shape coordinates ``(u, v)``."""
    if body.kind == "box":
        a = body.aspect / math.hypot(body.aspect, 1.0)
        b = 1.0 / math.hypot(body.aspect, 1.0)
        r = body.corner * b
        qx, qy = np.abs(u) - (a - r), np.abs(v) - (b - r)
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0) - r
    if body.kind == "oval":
        b = 1.0 / body.aspect
        k = np.hypot(u, v / b)
        return (k - 1.0) * b  # close to the distance near the rim, which is all anti-aliasing needs
    dist = None
    for i in range(3):  # a convex polygon: the largest signed distance to its edge lines
        p, q = body.wedge[i], body.wedge[(i + 1) % 3]
        n = np.array([q[1] - p[1], p[0] - q[0]]) / np.hypot(q[1] - p[1], p[0] - q[0])
        if np.dot(n, -body.wedge.mean(axis=0) + p) < 0:
            n = -n
        d = (u - p[0]) * n[0] + (v - p[1]) * n[1]
        dist = d if dist is None else np.maximum(dist, d)
    return dist


def _ground(rng: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / min(w, h)
    c1, c2 = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    low = cv2.resize(rng.uniform(0, 1, size=(5, 7)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if kind == "paper":
        img = c1 + (low[..., None] - 0.5) * 30 + rng.normal(0, 4, size=(h, w, 1)).astype(np.float32)
    elif kind == "wood":
        cx, cy = rng.uniform(-2, -0.5), rng.uniform(-1, 2)
        rings = np.sin(float(rng.uniform(25, 60)) * (np.hypot(xs - cx, ys - cy) + 0.15 * low))
        img = c1 + (c2 - c1) * (0.5 + 0.5 * rings[..., None]) * 0.6
    elif kind == "sky":
        img = c1 + (c2 - c1) * ys[..., None] / ys.max()
        img += 80 * np.clip(low - 0.55, 0, 1)[..., None]
    else:  # plaid
        f1, f2 = rng.uniform(6, 18, size=2)
        bands = (np.sin(f1 * xs * 2 * np.pi) > 0.3).astype(np.float32) + (np.sin(f2 * ys * 2 * np.pi) > 0.3)
        img = c1 + (c2 - c1) * (bands[..., None] / 2.0) * 0.7
    return np.clip(img, 0, 255).astype(np.float32)


class SdfRenderer:
    name = "sdf"

    def __init__(self, seed: int, width: int, height: int) -> None:
        rng = np.random.default_rng([seed, 51])
        self.width, self.height, self.short = width, height, float(min(width, height))
        self.ground = _ground(rng, str(rng.choice(GROUNDS)), width, height)
        mean = self.ground.reshape(-1, 3).mean(axis=0)
        self.bodies = [self._body(rng, mean) for _ in range(int(rng.integers(1, 4)))]
        self.noise = float(rng.uniform(0.0, 5.0))
        self.timeline_rng = rng

    def timeline(self, seconds: float) -> Timeline:
        return Timeline(self.timeline_rng, len(self.bodies), seconds, self.width, self.height)

    def _body(self, rng: np.random.Generator, mean: np.ndarray) -> Body:
        while True:
            fill = rng.uniform(0, 255, size=3).astype(np.float32)
            if np.linalg.norm(fill - mean) >= 70:
                break
        angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
        while np.min(np.diff(np.r_[angles, angles[0] + 2 * np.pi])) < 1.3:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
        wedge = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return Body(str(rng.choice(KINDS)), float(rng.uniform(1.4, 2.5)), float(rng.uniform(0.0, 0.5)), wedge,
                    fill, fill * 0.45)

    def draw(self, poses: list[Pose], rng: np.random.Generator) -> np.ndarray:
        img = self.ground.copy()
        for body, pose in zip(self.bodies, poses):
            self._paint(img, body, pose)
        if self.noise > 0:
            img += rng.normal(0, self.noise, size=img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def _paint(self, img: np.ndarray, body: Body, pose: Pose) -> None:
        radius = pose.d / 2.0 * self.short
        cx, cy = pose.x * self.short, pose.y * self.short
        pad = int(radius * 1.3) + 4
        x0, x1 = max(int(cx) - pad, 0), min(int(cx) + pad, self.width)
        y0, y1 = max(int(cy) - pad, 0), min(int(cy) + pad, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        t = math.radians(pose.angle)
        shadow_dx, shadow_dy = 0.06 * radius, 0.09 * radius
        for dx, dy, shadow in ((shadow_dx, shadow_dy, True), (0.0, 0.0, False)):
            px, py = (xs + 0.5 - cx - dx) / radius, (ys + 0.5 - cy - dy) / radius
            u, v = px * math.cos(t) + py * math.sin(t), -px * math.sin(t) + py * math.cos(t)
            dist = _sdf(body, u, v) * radius  # pixels
            cover = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
            region = img[y0:y1, x0:x1]
            if shadow:
                soft = cv2.GaussianBlur(cover, (0, 0), max(radius * 0.08, 0.6))[..., None] if cover.size else cover
                region *= 1.0 - 0.45 * soft
                continue
            light = 1.0 + 0.22 * (-(xs - cx) - (ys - cy))[..., None] / radius  # from the top left, fixed on screen
            rim = np.clip(dist / max(radius * 0.12, 1.0) + 1.0, 0.0, 1.0)[..., None]  # 1 at the edge, 0 inside
            paint = body.fill * light * (1.0 - rim) + body.rim * rim
            region[:] = region * (1.0 - cover) + paint * cover
