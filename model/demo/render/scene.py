"""A deterministic synthetic scene: shapes on a background doing one action per segment.

Positions and sizes are in units of the frame's shorter side ``S`` and rates are per second, so
the same seed gives the same motion at any resolution. Segments are made lazily (a live source runs
forever) and depend only on the seed, the frame size, the frame rate and the ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from model.demo.render import backdrops, fills, looks
from model.demo.render.actions import CLASSES, DOCUMENTED, MOVES, Ranges


@dataclass(frozen=True)
class ShapeState:
    """One shape at one instant. ``x, y``: centre in S; ``size``: circumscribed diameter in S."""

    x: float
    y: float
    size: float
    theta: float  # degrees, positive = clockwise on screen


@dataclass(frozen=True)
class Motion:
    """How one shape changes during a segment: S/s, degrees/s, and ln(size)/s."""

    vx: float = 0.0
    vy: float = 0.0
    omega: float = 0.0
    log_rate: float = 0.0

    def apply(self, state: ShapeState, dt: float) -> ShapeState:
        return ShapeState(
            x=state.x + self.vx * dt,
            y=state.y + self.vy * dt,
            size=state.size * math.exp(self.log_rate * dt),
            theta=state.theta + self.omega * dt,
        )


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` doing ``label``; ``starts``/``motions`` hold one entry per shape."""

    label: str
    start: int
    end: int
    starts: tuple[ShapeState, ...]
    motions: tuple[Motion, ...]

    @property
    def num_frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Look:
    """What does not change over a scene: the shapes' outlines and colours."""

    outlines: tuple[np.ndarray, ...]
    colours: tuple[np.ndarray, ...]
    styles: tuple[fills.Style, ...] | None = None  # None: flat colours (the documented look)


class Scene:
    """Everything about one synthetic video; ``render(i)`` and ``label(i)`` for any frame index ``i``."""

    def __init__(self, seed: int, width: int, height: int, fps: float, ranges: Ranges = DOCUMENTED,
                 script: tuple[str, ...] = ()) -> None:
        """``script``: the labels of the first segments (then random); the dataset writer uses it to choose
        a clip's action and what the shapes did before it."""
        self.seed = int(seed)
        self.script = tuple(script)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.ranges = ranges
        self.scale = float(min(self.width, self.height))  # S in pixels
        self.extent = (self.width / self.scale, self.height / self.scale)  # frame size in S
        self._rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 1])
        rng = self._rng
        self.background_kind = str(rng.choice(ranges.backgrounds))
        self.background = looks.background(rng, self.background_kind, self.width, self.height)
        self.noise_sigma = float(rng.uniform(*ranges.noise))
        mean = self.background.reshape(-1, 3).mean(axis=0)
        count = int(rng.integers(ranges.num_shapes[0], ranges.num_shapes[1] + 1))
        kinds = [str(rng.choice(ranges.shapes)) for _ in range(count)]
        self.shape_kinds = tuple(kinds)
        self.look = Look(
            outlines=tuple(looks.outline(rng, kind, ranges.aspect) for kind in kinds),
            colours=tuple(looks.contrasting_colour(rng, mean, ranges.min_contrast) for _ in kinds),
        )
        if ranges.fills != ("solid",) or ranges.aliased > 0 or ranges.lighting > 0:  # draws nothing otherwise
            self.look = self._styled(rng, self.look, mean)
        self._state = tuple(self._place(rng, self._draw_size(rng)) for _ in kinds)
        self._segments: list[Segment] = []
        self._first_kept = 0  # index in the timeline of self._segments[0]

    def _styled(self, rng: np.random.Generator, look: Look, mean: np.ndarray) -> Look:
        """The look with per-shape fill styles, and the background under a lighting overlay maybe."""
        r = self.ranges
        styles = tuple(fills.random_style(rng, str(rng.choice(r.fills)), colour,
                                          looks.contrasting_colour(rng, colour, r.min_contrast), r.aliased)
                       for colour in look.colours)
        if rng.uniform() < r.lighting:
            lit = backdrops.lighting(rng, self.background.astype(np.float32))
            self.background = np.clip(lit, 0.0, 255.0).astype(np.uint8)
        return replace(look, styles=styles)

    # ----- timeline -------------------------------------------------------------------------
    def segment_for(self, frame: int) -> Segment:
        """The segment holding ``frame``, making segments as needed."""
        while not self._segments or self._segments[-1].end <= frame:
            self._segments.append(self._next_segment())
        for seg in reversed(self._segments):
            if seg.start <= frame:
                return seg
        raise IndexError(f"frame {frame} precedes the segments still kept; render frames in order")

    def forget_before(self, frame: int) -> None:
        """Drop segments that end at or before ``frame`` (a live source keeps memory bounded)."""
        while len(self._segments) > 1 and self._segments[0].end <= frame:
            self._segments.pop(0)
            self._first_kept += 1

    def segments_until(self, num_frames: int) -> list[Segment]:
        """All segments covering frames ``[0, num_frames)``, the last one cut at ``num_frames``."""
        self.segment_for(max(num_frames - 1, 0))
        out = [seg for seg in self._segments if seg.start < num_frames]
        if out and out[-1].end > num_frames:
            out[-1] = replace(out[-1], end=num_frames)
        return out

    def label(self, frame: int) -> str:
        return self.segment_for(frame).label

    def _next_segment(self) -> Segment:
        rng = self._rng
        previous = self._segments[-1] if self._segments else None
        start = previous.end if previous else 0
        if len(self._segments) + self._first_kept < len(self.script):
            label = self.script[len(self._segments) + self._first_kept]
        else:
            choices = [c for c in CLASSES if previous is None or c != previous.label]
            label = str(rng.choice(choices))
        duration = float(rng.uniform(*self.ranges.segment_s))
        frames = max(1, int(round(duration * self.fps)))
        duration = frames / self.fps
        if previous is not None:
            self._state = tuple(
                m.apply(s, previous.num_frames / self.fps) for s, m in zip(previous.starts, previous.motions)
            )
        starts, motions = [], []
        for index, state in enumerate(self._state):
            own = label
            if index > 0 and rng.uniform() < self.ranges.still_distractors:
                own = "still"
            state, motion = self._fit(rng, state, own, duration)
            starts.append(state)
            motions.append(motion)
        return Segment(label, start, start + frames, tuple(starts), tuple(motions))

    # ----- fitting one shape's motion into the frame -----------------------------------------
    def _draw_size(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.ranges.size))

    def _bounds(self, size: float) -> tuple[float, float, float, float]:
        margin = self.ranges.inside * size / 2.0
        fw, fh = self.extent
        return margin, max(margin, fw - margin), margin, max(margin, fh - margin)

    def _place(self, rng: np.random.Generator, size: float) -> ShapeState:
        x0, x1, y0, y1 = self._bounds(size)
        return ShapeState(float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), size, float(rng.uniform(0, 360)))

    def _clamp(self, state: ShapeState, size: float) -> ShapeState:
        x0, x1, y0, y1 = self._bounds(size)
        return replace(state, x=min(max(state.x, x0), x1), y=min(max(state.y, y0), y1))

    def _fit(self, rng: np.random.Generator, state: ShapeState, label: str, duration: float):
        """Choose this segment's rate for one shape; re-place the shape if the action cannot fit."""
        r = self.ranges
        if label in MOVES:
            ux, uy = MOVES[label]
            speed = float(rng.uniform(*r.speed))
            state = self._clamp(state, state.size)
            x0, x1, y0, y1 = self._bounds(state.size)
            room = {(-1, 0): state.x - x0, (1, 0): x1 - state.x, (0, -1): state.y - y0, (0, 1): y1 - state.y}
            if room[(ux, uy)] < r.speed[0] * duration:  # too close to the edge: start elsewhere
                size = min(state.size, self._draw_size(rng))
                x0, x1, y0, y1 = self._bounds(size)
                span = (x1 - x0) if ux else (y1 - y0)
                speed = min(speed, span / duration)
                slack = max(span - speed * duration, 0.0)
                offset = float(rng.uniform(0.0, slack))
                along = (x0 if ux else y0) + offset if (ux + uy) > 0 else (x1 if ux else y1) - offset
                other = state.y if ux else state.x
                state = ShapeState(along, other, size, state.theta) if ux else ShapeState(other, along, size, state.theta)
                state = self._clamp(state, size)
            else:
                speed = min(speed, room[(ux, uy)] / duration)
            return state, Motion(vx=ux * speed, vy=uy * speed)
        if label in ("rotate_cw", "rotate_ccw"):
            omega = float(rng.uniform(*r.rotation)) * (1.0 if label == "rotate_cw" else -1.0)
            return state, Motion(omega=omega)
        if label in ("grow", "shrink"):
            sign = 1.0 if label == "grow" else -1.0
            rate = math.log(float(rng.uniform(*r.scale_rate)))
            lo, hi = math.log(r.size[0]), math.log(r.size[1])
            max_rate = (hi - lo) / duration
            rate = min(rate, max_rate)
            start = math.log(state.size)
            end = start + sign * rate * duration
            if end > hi or end < lo:  # re-size so the whole segment stays within the size range
                free = max((hi - lo) - rate * duration, 0.0)
                offset = float(rng.uniform(0.0, free))
                start = lo + offset if sign > 0 else hi - offset
                end = start + sign * rate * duration
            state = replace(state, size=math.exp(start))
            state = self._clamp(state, max(math.exp(start), math.exp(end)))
            return state, Motion(log_rate=sign * rate)
        return state, Motion()

    # ----- pixels ------------------------------------------------------------------------------
    def states_at(self, segment: Segment, seconds: float) -> list[ShapeState]:
        """Every shape's state ``seconds`` after the segment's start (may be fractional frames)."""
        return [m.apply(s, seconds) for s, m in zip(segment.starts, segment.motions)]

    def draw(self, states: list[ShapeState], noise_rng: np.random.Generator | None, sigma: float) -> np.ndarray:
        """Background + shapes (+ Gaussian noise of ``sigma`` levels) -> uint8 BGR ``(H, W, 3)``."""
        image = self.background.copy()
        styles = self.look.styles or (None,) * len(states)
        for unit, colour, style, st in zip(self.look.outlines, self.look.colours, styles, states):
            centre, radius = (st.x * self.scale, st.y * self.scale), st.size * self.scale / 2.0
            pts = looks.place(unit, centre[0], centre[1], radius, st.theta)
            if style is None:
                looks.draw_polygon(image, pts, colour)
            else:
                fills.paint(image, pts, centre, radius, st.theta, style)
        if noise_rng is not None and sigma > 0.0:
            noisy = noise_rng.standard_normal(image.shape, dtype=np.float32)  # (H, W, 3)
            noisy *= sigma
            noisy += image
            image = np.clip(noisy, 0.0, 255.0, out=noisy).astype(np.uint8)
        return image

    def render(self, frame: int) -> np.ndarray:
        """Frame ``frame`` of the video (uint8 BGR), identical on every call for the same seed."""
        segment = self.segment_for(frame)
        states = self.states_at(segment, (frame - segment.start) / self.fps)
        noise_rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 2, frame])
        return self.draw(states, noise_rng, self.noise_sigma)
