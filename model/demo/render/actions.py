"""The action classes of the synthetic motion demo and the ranges the renderer draws from.

Every range is in units that do not depend on the frame's resolution: lengths are fractions of the
frame's shorter side (written ``S``), rates are per second. ``DOCUMENTED`` is what
``docs/DEMO_MODEL.md`` promises and what ``python -m model.demo.render`` and the live source render;
``WIDE`` is the much broader variety the demo model is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The demo model's ``domain`` (config.json): all it has seen is what this renderer draws.
DOMAIN = "synthetic-shapes"

CLASSES: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
    "still",
)

#: Each class's time-reverse (``still`` is its own).
REVERSED: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
    "grow": "shrink",
    "shrink": "grow",
    "still": "still",
}

#: How classes change when the frames are mirrored left-right (unlisted classes stay).
HFLIP: dict[str, str] = {"move_left": "move_right", "move_right": "move_left",
                         "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}
#: ... mirrored top-bottom.
VFLIP: dict[str, str] = {"move_up": "move_down", "move_down": "move_up",
                         "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}
#: ... transposed (x and y swapped).
TRANSPOSE: dict[str, str] = {"move_left": "move_up", "move_up": "move_left", "move_right": "move_down",
                             "move_down": "move_right", "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}

#: Unit direction of each translation in image coordinates (x right, y down).
MOVES: dict[str, tuple[int, int]] = {
    "move_left": (-1, 0),
    "move_right": (1, 0),
    "move_up": (0, -1),
    "move_down": (0, 1),
}

SHAPES: tuple[str, ...] = ("rectangle", "ellipse", "triangle")
EXTRA_SHAPES: tuple[str, ...] = ("pentagon", "star", "blob")
BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "texture", "noise")
EXTRA_BACKGROUNDS: tuple[str, ...] = ("stripes", "checker", "radial")
BUSY_BACKGROUNDS: tuple[str, ...] = ("clutter", "tiles", "blotches")  # render/backdrops.py
MORE_SHAPES: tuple[str, ...] = ("arrow", "lshape", "trapezoid")


@dataclass(frozen=True)
class Ranges:
    """What one renderer may draw. Pairs are inclusive ``(low, high)`` ranges."""

    size: tuple[float, float] = (0.20, 0.45)  # circumscribed diameter of a shape, in S
    speed: tuple[float, float] = (0.15, 0.50)  # translation, S per second
    rotation: tuple[float, float] = (60.0, 180.0)  # degrees per second
    scale_rate: tuple[float, float] = (1.25, 2.0)  # size factor per second (grow x r, shrink / r)
    segment_s: tuple[float, float] = (2.5, 5.0)  # length of one action segment, seconds
    fps: tuple[float, float] = (15.0, 30.0)  # frame rates the files and live source use
    num_shapes: tuple[int, int] = (1, 3)
    noise: tuple[float, float] = (0.0, 6.0)  # per-frame Gaussian noise sigma, 8-bit levels
    min_contrast: float = 60.0  # RGB distance between a shape and the background's mean colour
    aspect: tuple[float, float] = (1.4, 2.5)  # long/short side of rectangles and ellipses
    shapes: tuple[str, ...] = SHAPES
    backgrounds: tuple[str, ...] = BACKGROUNDS
    inside: float = 1.0  # fraction of a shape's circumradius kept inside the frame (1 = whole shape)
    still_distractors: float = 0.0  # probability that a shape other than the first stays still
    fills: tuple[str, ...] = ("solid",)  # how shapes are painted (render/fills.py); solid: a flat colour
    aliased: float = 0.0  # probability that a shape is drawn without anti-aliasing
    lighting: float = 0.0  # probability of a vignette or light gradient over the background

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


DOCUMENTED = Ranges()

#: Training variety: far wider than the documented ranges, so the model does not learn one look.
WIDE = Ranges(
    size=(0.12, 0.6),
    speed=(0.10, 0.80),
    rotation=(40.0, 260.0),
    scale_rate=(1.2, 2.6),
    segment_s=(2.5, 5.0),
    fps=(8.0, 60.0),
    num_shapes=(1, 4),
    noise=(0.0, 20.0),
    min_contrast=30.0,
    aspect=(1.25, 3.0),
    shapes=SHAPES + EXTRA_SHAPES,
    backgrounds=BACKGROUNDS + EXTRA_BACKGROUNDS,
    inside=0.4,
    still_distractors=0.3,
)

#: The demo model's training data (python -m model.demo.dataset): the wide variety, plus busy and
#: photo-like backgrounds, lighting, more shape kinds, and shapes painted with gradients, textures,
#: outlines and borders, with or without anti-aliasing.
RANDOMIZED = replace(
    WIDE,
    shapes=SHAPES + EXTRA_SHAPES + MORE_SHAPES,
    backgrounds=BACKGROUNDS + EXTRA_BACKGROUNDS + BUSY_BACKGROUNDS + BUSY_BACKGROUNDS,  # busy ones twice as often
    fills=("solid", "solid", "gradient", "texture", "outline", "bordered"),
    aliased=0.3,
    lighting=0.3,
)
