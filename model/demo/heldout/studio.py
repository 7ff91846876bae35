"""Held-out renderer "studio": a room, a desk or a night scene, with sticker-like shapes (white border,
hatched or dotted print) drawn by OpenCV's own ellipse and convex-polygon rasterizers without
anti-aliasing at twice the size, then shrunk. Not used for training: it scores how the demo model
generalizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.demo.heldout.timeline import Pose, Timeline

KINDS = ("rect", "ellipse", "tri")
SCENES = ("room", "desk", "night")
PRINTS = ("plain", "hatch", "dots")
UP = 2  # drawing scale


@dataclass(frozen=True)
class Sticker:
    kind: str
    aspect: float
    tri: np.ndarray  # (3, 2) corners at circumradius 1
    colour: tuple[float, float, float]
    ink: tuple[float, float, float]
    print: str
    border: float  # white border width, share of the radius


def _scene(rng: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.float32)
    if kind == "room":
        horizon = int(h * rng.uniform(0.35, 0.6))
        wall, floor_a, floor_b = rng.uniform(60, 230, size=(3, 3))
        img[:horizon] = wall * np.linspace(0.8, 1.05, horizon)[:, None, None]
        ys, xs = np.mgrid[horizon:h, 0:w].astype(np.float32)
        depth = (ys - horizon + 4.0) / (h - horizon + 4.0)  # perspective: far rows are thin
        tile = ((np.floor((xs - w / 2) / (depth * w * 0.15) + 100) + np.floor(6.0 / depth)) % 2)[..., None]
        img[horizon:] = floor_a * (1 - tile) + floor_b * tile
    elif kind == "desk":
        img[:] = rng.uniform(70, 200, size=3)
        for _ in range(int(rng.integers(3, 9))):  # books and cups, with their shadows
            colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
            x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            s = int(rng.uniform(0.05, 0.2) * min(w, h))
            if rng.uniform() < 0.5:
                cv2.rectangle(img, (x + 3, y + 3), (x + 2 * s + 3, y + s + 3), (20, 20, 20), -1)
                cv2.rectangle(img, (x, y), (x + 2 * s, y + s), colour, -1)
            else:
                cv2.circle(img, (x + 3, y + 3), s, (20, 20, 20), -1)
                cv2.circle(img, (x, y), s, colour, -1)
        img = cv2.GaussianBlur(img, (0, 0), 1.2)
    else:  # night: dark and grainy
        img[:] = rng.uniform(10, 60, size=3)
        img += cv2.resize(rng.uniform(0, 25, size=(4, 6, 3)).astype(np.float32), (w, h))
    return img


class StudioRenderer:
    name = "studio"

    def __init__(self, seed: int, width: int, height: int) -> None:
        rng = np.random.default_rng([seed, 77])
        self.width, self.height, self.short = width, height, float(min(width, height))
        self.kind = str(rng.choice(SCENES))
        self.back = _scene(rng, self.kind, width, height)
        self.back_up = cv2.resize(self.back, (width * UP, height * UP), interpolation=cv2.INTER_NEAREST)
        mean = self.back.reshape(-1, 3).mean(axis=0)
        self.stickers = [self._sticker(rng, mean) for _ in range(int(rng.integers(1, 4)))]
        self.grain = float(rng.uniform(5.0, 10.0) if self.kind == "night" else rng.uniform(0.0, 4.0))
        self.rng = rng

    def timeline(self, seconds: float) -> Timeline:
        return Timeline(self.rng, len(self.stickers), seconds, self.width, self.height)

    def _sticker(self, rng: np.random.Generator, mean: np.ndarray) -> Sticker:
        while True:
            colour = rng.uniform(0, 255, size=3)
            if np.linalg.norm(colour - mean) >= 80:
                break
        angles = np.array([0.0, rng.uniform(1.6, 2.6), rng.uniform(3.7, 4.7)]) + rng.uniform(0, 6.3)
        tri = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        ink = tuple(float(c) for c in np.clip(colour * rng.uniform(0.2, 0.5), 0, 255))
        return Sticker(str(rng.choice(KINDS)), float(rng.uniform(1.4, 2.5)), tri,
                       tuple(float(c) for c in colour), ink, str(rng.choice(PRINTS)), float(rng.uniform(0.0, 0.15)))

    def draw(self, poses: list[Pose], rng: np.random.Generator) -> np.ndarray:
        img = self.back_up.copy()
        for sticker, pose in zip(self.stickers, poses):
            self._stick(img, sticker, pose)
        img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if self.grain > 0:
            img += rng.normal(0, self.grain, size=img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def _outline(self, s: Sticker, pose: Pose, grow: float) -> np.ndarray:
        """The sticker's corners (rect, tri) or a fine polygon (ellipse) in drawing pixels, int32."""
        r = pose.d / 2.0 * self.short * UP * grow
        t = math.radians(pose.angle)
        if s.kind == "rect":
            a = s.aspect / math.hypot(s.aspect, 1.0)
            local = np.array([[-a, -1], [a, -1], [a, 1], [-a, 1]]) * np.array([1.0, 1.0 / math.hypot(s.aspect, 1.0)])
        elif s.kind == "tri":
            local = s.tri
        else:
            return np.array(cv2.ellipse2Poly((int(pose.x * self.short * UP), int(pose.y * self.short * UP)),
                                             (max(1, int(r)), max(1, int(r / s.aspect))), int(round(pose.angle)) % 360,
                                             0, 360, 4), np.int32)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return np.round(local @ rot.T * r + np.array([pose.x, pose.y]) * self.short * UP).astype(np.int32)

    def _stick(self, img: np.ndarray, s: Sticker, pose: Pose) -> None:
        if s.border > 0:
            cv2.fillConvexPoly(img, self._outline(s, pose, 1.0), (245, 245, 245), cv2.LINE_8)
        inner = self._outline(s, pose, 1.0 - s.border)
        cv2.fillConvexPoly(img, inner, s.colour, cv2.LINE_8)
        if s.print == "plain":
            return
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, inner, 1, cv2.LINE_8)
        r = pose.d / 2.0 * self.short * UP
        t = math.radians(pose.angle)
        ys, xs = np.nonzero(mask)
        px, py = (xs - pose.x * self.short * UP) / r, (ys - pose.y * self.short * UP) / r
        u, v = px * math.cos(t) + py * math.sin(t), -px * math.sin(t) + py * math.cos(t)
        if s.print == "hatch":
            on = (np.sin(14.0 * (u + v)) > 0.4)
        else:
            on = np.hypot((u * 3.0) % 1.0 - 0.5, (v * 3.0) % 1.0 - 0.5) < 0.22
        img[ys[on], xs[on]] = s.ink
