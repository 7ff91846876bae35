"""The held-out renderers' own story of a video: which action when, and where every shape is at time t.

Written apart from the training renderer (:mod:`model.demo.render`), from the documented contract
alone (docs/DEMO_MODEL.md: the nine classes in image coordinates, the documented ranges, whole
shapes inside the frame, re-placement only at a segment boundary). Lengths are in units of the
frame's shorter side ``S``; angles in degrees, positive = clockwise on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LABELS = ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink", "still")
STEP = {"move_left": (-1.0, 0.0), "move_right": (1.0, 0.0), "move_up": (0.0, -1.0), "move_down": (0.0, 1.0)}
SIZE, SPEED, SPIN, SCALE = (0.20, 0.45), (0.15, 0.50), (60.0, 180.0), (1.25, 2.0)  # the documented ranges
SEGMENT_S = (2.5, 5.0)


@dataclass(frozen=True)
class Pose:
    x: float  # centre, S
    y: float
    d: float  # circumscribed diameter, S
    angle: float  # degrees, clockwise on screen


@dataclass(frozen=True)
class Act:
    """One shape during one segment: its pose at the segment start and its rates."""

    start: Pose
    vx: float = 0.0  # S per second
    vy: float = 0.0
    spin: float = 0.0  # degrees per second
    growth: float = 0.0  # ln(diameter) per second

    def at(self, t: float) -> Pose:
        p = self.start
        return Pose(p.x + self.vx * t, p.y + self.vy * t, p.d * math.exp(self.growth * t), p.angle + self.spin * t)


@dataclass(frozen=True)
class Part:
    label: str
    t0: float
    t1: float
    acts: tuple[Act, ...]


class Timeline:
    """``parts``: the video's segments; ``poses(t)``: every shape at time ``t``; ``label(t)``."""

    def __init__(self, rng: np.random.Generator, shapes: int, seconds: float, width: int, height: int) -> None:
        self.rng = rng
        short = float(min(width, height))
        self.fw, self.fh = width / short, height / short  # frame size in S
        poses = [self._anywhere(rng.uniform(*SIZE)) for _ in range(shapes)]
        self.parts: list[Part] = []
        t, label = 0.0, None
        while t < seconds:
            label = str(rng.choice([c for c in LABELS if c != label]))
            length = float(rng.uniform(*SEGMENT_S))
            acts = tuple(self._act(label, pose, length) for pose in poses)
            self.parts.append(Part(label, t, t + length, acts))
            poses = [a.at(length) for a in acts]
            t += length

    def part(self, t: float) -> Part:
        for p in self.parts:
            if p.t0 <= t < p.t1:
                return p
        return self.parts[-1]

    def poses(self, t: float) -> list[Pose]:
        p = self.part(t)
        return [a.at(t - p.t0) for a in p.acts]

    # ----- fitting one shape's action in the frame ----------------------------------------------
    def _room(self, d: float) -> tuple[float, float, float, float]:
        r = d / 2.0
        return r, self.fw - r, r, self.fh - r

    def _anywhere(self, d: float) -> Pose:
        x0, x1, y0, y1 = self._room(d)
        return Pose(float(self.rng.uniform(x0, x1)), float(self.rng.uniform(y0, y1)), d, float(self.rng.uniform(0, 360)))

    def _act(self, label: str, pose: Pose, length: float) -> Act:
        rng = self.rng
        if label in STEP:
            ux, uy = STEP[label]
            speed = float(rng.uniform(*SPEED))
            x0, x1, y0, y1 = self._room(pose.d)
            end_x, end_y = pose.x + ux * speed * length, pose.y + uy * speed * length
            if not (x0 <= end_x <= x1 and y0 <= end_y <= y1):  # start where the whole move fits
                span = (x1 - x0) if ux else (y1 - y0)
                speed = min(speed, 0.98 * span / length)
                travel = speed * length
                lo = (x0 if ux else y0) if ux + uy > 0 else (x0 if ux else y0) + travel
                hi = lo + max(span - travel, 0.0)
                start = float(rng.uniform(lo, hi))
                pose = Pose(start, pose.y, pose.d, pose.angle) if ux else Pose(pose.x, start, pose.d, pose.angle)
            return Act(pose, vx=ux * speed, vy=uy * speed)
        if label in ("rotate_cw", "rotate_ccw"):
            return Act(pose, spin=float(rng.uniform(*SPIN)) * (1 if label == "rotate_cw" else -1))
        if label in ("grow", "shrink"):
            return self._scale(label, pose, length)
        return Act(pose)

    def _scale(self, label: str, pose: Pose, length: float) -> Act:
        rate = min(math.log(float(self.rng.uniform(*SCALE))), 0.98 * math.log(SIZE[1] / SIZE[0]) / length)
        sign = 1.0 if label == "grow" else -1.0
        end = pose.d * math.exp(sign * rate * length)
        if not SIZE[0] <= end <= SIZE[1] or not SIZE[0] <= pose.d <= SIZE[1]:
            d0 = SIZE[0] if sign > 0 else SIZE[1]
            pose = Pose(pose.x, pose.y, d0 * math.exp(sign * float(self.rng.uniform(0.0, 0.01))), pose.angle)
        biggest = max(pose.d, pose.d * math.exp(sign * rate * length))
        x0, x1, y0, y1 = self._room(biggest)
        pose = Pose(min(max(pose.x, x0), x1), min(max(pose.y, y0), y1), pose.d, pose.angle)
        return Act(pose, growth=sign * rate)
