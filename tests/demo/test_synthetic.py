"""The synthetic action renderer: deterministic, labeled, and its motion matches its labels."""

from __future__ import annotations

import json

import cv2
import feeds
import numpy as np
import pytest

from model.errors import ConfigError
from model.demo.render import CLASSES, REVERSED, Scene, is_rendered, write_video
from model.demo.render.actions import DOCUMENTED, MOVES
from model.demo.render.scene import Motion, ShapeState
from streamer.sources.synthetic import open_capture


def test_same_seed_same_frames_and_labels_at_any_access_order():
    a, b = Scene(11, 160, 120, 25), Scene(11, 160, 120, 25)
    frames_a = [a.render(i) for i in range(0, 120, 7)]
    labels_a = [a.label(i) for i in range(0, 120, 7)]
    b.segment_for(119)  # make segments ahead first: must not change anything
    assert all(np.array_equal(x, b.render(i)) for x, i in zip(frames_a, range(0, 120, 7)))
    assert labels_a == [b.label(i) for i in range(0, 120, 7)]
    assert not np.array_equal(Scene(12, 160, 120, 25).render(0), frames_a[0])


def test_segments_cover_every_frame_with_known_classes_and_change_label():
    scene = Scene(3, 160, 120, 25)
    segments = scene.segments_until(2000)
    assert segments[0].start == 0 and segments[-1].end == 2000
    assert all(s.end == n.start for s, n in zip(segments, segments[1:]))
    assert all(s.label != n.label for s, n in zip(segments, segments[1:]))
    assert {s.label for s in segments} <= set(CLASSES)
    lo, hi = DOCUMENTED.segment_s
    assert all(lo * 25 - 1 <= s.num_frames <= hi * 25 + 1 for s in segments[:-1])


def test_shapes_stay_inside_the_frame_and_within_the_size_range():
    scene = Scene(5, 200, 100, 25)
    fw, fh = scene.extent
    for seg in scene.segments_until(3000):
        for when in (0.0, seg.num_frames / scene.fps):
            for st in scene.states_at(seg, when):
                r = st.size / 2
                assert -1e-6 <= st.x - r and st.x + r <= fw + 1e-6 and -1e-6 <= st.y - r and st.y + r <= fh + 1e-6
                assert DOCUMENTED.size[0] - 1e-6 <= st.size <= DOCUMENTED.size[1] + 1e-6


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("label", list(MOVES))
def test_moves_go_the_named_way_in_image_coordinates(label):
    scene = Scene(0, 160, 120, 25)
    scene.look = type(scene.look)(outlines=scene.look.outlines[:1], colours=(np.full(3, 255.0, np.float32),))
    scene.background = np.zeros((120, 160, 3), np.uint8)
    ux, uy = MOVES[label]
    start = ShapeState(0.66, 0.5, 0.3, 0.0)
    motion = Motion(vx=0.2 * ux, vy=0.2 * uy)
    masks = [scene.draw([motion.apply(start, t)], None, 0.0)[..., 0] > 128 for t in (0.0, 0.5)]
    shift = _centroid(masks[1]) - _centroid(masks[0])
    assert np.sign(np.round(shift)).tolist() == [ux, uy]


def test_clockwise_is_clockwise_on_screen():
    # the top of a needle pointing up (theta 0 = +x; -90 = up) moves right when turning clockwise
    scene = Scene(0, 120, 120, 25)
    needle = np.array([[0.0, -0.05], [1.0, 0.0], [0.0, 0.05]], np.float32)
    scene.look = type(scene.look)(outlines=(needle,), colours=(np.array([255.0, 255.0, 255.0], np.float32),))
    scene.background = np.zeros((120, 120, 3), np.uint8)
    up = ShapeState(0.5, 0.5, 0.8, -90.0)
    cw = Motion(omega=+90.0).apply(up, 0.2)  # rotate_cw turns theta up
    tip = [_centroid(scene.draw([s], None, 0.0)[..., 0] > 128) for s in (up, cw)]
    assert tip[1][0] > tip[0][0] + 3  # moved right: clockwise as seen on screen


def test_reversed_pairs_are_symmetric():
    assert all(REVERSED[REVERSED[c]] == c for c in CLASSES)
    assert REVERSED["rotate_cw"] == "rotate_ccw" and REVERSED["grow"] == "shrink" and REVERSED["still"] == "still"


def test_live_capture_quacks_like_videocapture():
    cap = open_capture({"seed": "3", "fps": "30", "width": "96", "height": "64", "frames": "5"})
    assert cap.isOpened()
    assert cap.get(cv2.CAP_PROP_FPS) == 30.0
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96.0, 64.0)
    got = [cap.read() for _ in range(6)]
    assert [ok for ok, _ in got] == [True] * 5 + [False]
    assert got[0][1].shape == (64, 96, 3) and got[0][1].dtype == np.uint8
    assert cap.label in CLASSES and cap.label == Scene(3, 96, 64, 30).label(4)
    cap.release()
    assert not cap.isOpened() and cap.read() == (False, None)


@pytest.mark.parametrize("params, word", [({"sed": "1"}, "unknown"), ({"fps": "0"}, "out of range"),
                                          ({"width": "wide"}, "not a int")])
def test_bad_parameters_are_config_errors(params, word):
    with pytest.raises(ConfigError, match=word):
        open_capture(params)


def test_video_file_and_sidecar_agree(tmp_path):
    scene = Scene(9, 96, 72, 20)
    truth = write_video(tmp_path / "clip.avi", scene, 90)
    side = json.loads((tmp_path / "clip.json").read_text())
    assert side == truth and len(side["labels"]) == 90 and side["fps"] == 20
    assert side["labels"] == [Scene(9, 96, 72, 20).label(i) for i in range(90)]
    frames = feeds.read_frames(tmp_path / "clip.avi")
    assert len(frames) == 90
    assert np.abs(frames[10].astype(int) - scene.render(10)).mean() < 6  # lossy, but the same picture
    assert is_rendered(tmp_path / "clip.avi")  # the sidecar marks the renderer's videos ...
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    assert not is_rendered(tmp_path / "other.avi") and not is_rendered(tmp_path / "none.avi")  # ... only those


def test_training_clips_have_their_label_and_vary_in_size():
    from model.demo.render.clips import render_clip

    sizes, rates = set(), set()
    for i, label in enumerate(CLASSES * 3):
        frames, fps = render_clip(np.random.default_rng([5, i]), label)
        assert 15 <= len(frames) and all(f.dtype == np.uint8 and f.shape == frames[0].shape for f in frames)
        sizes.add(frames[0].shape[:2])
        rates.add(round(fps, 1))
    assert len(sizes) > 20 and len(rates) > 20


def test_a_scripted_scene_does_its_script_then_goes_on(tmp_path):
    """``script``: the first segments' actions; the shapes carry over from one to the next."""
    scene = Scene(4, 160, 120, 25, DOCUMENTED, script=("grow", "rotate_cw", "still"))
    segments = [scene.segment_for(0)]
    while len(segments) < 5:
        segments.append(scene.segment_for(segments[-1].end))
    assert [s.label for s in segments[:3]] == ["grow", "rotate_cw", "still"]
    assert segments[3].label != "still" and segments[4].label != segments[3].label
    ends = scene.states_at(segments[1], segments[1].num_frames / scene.fps)  # rotations never re-place a shape
    assert [(s.x, s.y, s.size) for s in segments[2].starts] == [(s.x, s.y, s.size) for s in ends]
    plain = Scene(4, 160, 120, 25)
    assert np.array_equal(plain.render(0), Scene(4, 160, 120, 25).render(0))  # no script: as before
