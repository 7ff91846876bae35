"""The held-out renderers (model/demo/heldout): they keep the documented contract the demo model is scored
against: the nine actions in image coordinates, the documented ranges, whole shapes in the frame."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from model.demo.heldout import RENDERERS, write_heldout
from model.demo.heldout.timeline import LABELS, SEGMENT_S, SIZE, Pose, Timeline

W, H = 320, 240


def moments(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Centroid x, y, area and orientation (degrees, image coordinates: + is clockwise on screen)."""
    m = cv2.moments(mask.astype(np.float32))
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    angle = 0.5 * math.degrees(math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"]))
    return cx, cy, m["m00"], angle


def shape_mask(renderer, pose: Pose) -> np.ndarray:
    """Where the renderer's first shape is, at ``pose`` (difference to the empty frame, same noise)."""
    empty = renderer.draw([], np.random.default_rng(0)).astype(np.int32)
    drawn = renderer.draw([pose], np.random.default_rng(0)).astype(np.int32)
    return (np.abs(drawn - empty).sum(axis=2) > 30).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(RENDERERS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_actions_mean_what_their_names_say(name, seed):
    renderer = RENDERERS[name](seed, W, H)
    start = Pose(0.66, 0.5, 0.4, 30.0)
    base = moments(shape_mask(renderer, start))
    turned = moments(shape_mask(renderer, Pose(0.66, 0.5, 0.4, 45.0)))
    assert 5.0 < (turned[3] - base[3] + 90) % 180 - 90 < 25.0  # 15 degrees clockwise on screen
    right = moments(shape_mask(renderer, Pose(0.76, 0.5, 0.4, 30.0)))
    down = moments(shape_mask(renderer, Pose(0.66, 0.6, 0.4, 30.0)))
    assert right[0] - base[0] > 0.08 * H and abs(right[1] - base[1]) < 2
    assert down[1] - base[1] > 0.08 * H and abs(down[0] - base[0]) < 2
    grown = moments(shape_mask(renderer, Pose(0.66, 0.5, 0.44, 30.0)))
    assert 1.1 < grown[2] / base[2] < 1.4  # (0.44 / 0.4)^2 = 1.21


@pytest.mark.parametrize("seed", range(8))
def test_timeline_keeps_the_documented_ranges_and_the_shapes_in_the_frame(seed):
    rng = np.random.default_rng(seed)
    tl = Timeline(rng, 3, 60.0, 400, 300)
    labels = [p.label for p in tl.parts]
    assert all(a != b for a, b in zip(labels, labels[1:])) and set(labels) <= set(LABELS)
    for part in tl.parts:
        assert SEGMENT_S[0] <= part.t1 - part.t0 <= SEGMENT_S[1]
        for act in part.acts:
            assert math.hypot(act.vx, act.vy) <= 0.5 and abs(act.spin) <= 180 and abs(act.growth) <= math.log(2.0)
            assert (act.spin != 0) == part.label.startswith("rotate") and (act.growth > 0) == (part.label == "grow")
        for t in np.linspace(part.t0, part.t1 - 1e-6, 12):
            for pose in tl.poses(float(t)):
                r = pose.d / 2
                assert r - 1e-6 <= pose.x <= 400 / 300 - r + 1e-6 and r - 1e-6 <= pose.y <= 1 - r + 1e-6
                assert SIZE[0] * 0.99 <= pose.d <= SIZE[1] * 1.01


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_video_and_sidecar_agree(tmp_path, name):
    truth = write_heldout(tmp_path / "v.mp4", RENDERERS[name](5, 160, 120), 5, 12.0, 20.0)
    side = json.loads((tmp_path / "v.json").read_text())
    assert side == truth and len(side["labels"]) == side["num_frames"] == 240
    for seg in side["segments"]:
        assert set(side["labels"][seg["start_frame"]:seg["end_frame"]]) == {seg["label"]}
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 240
    cap.release()
