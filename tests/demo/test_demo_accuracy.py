"""The shipped motion-demo model through the real pipeline: held-out labeled videos, scored per window.

``run_stream.py`` runs in file mode in a subprocess, a subscriber collects every result, and each
window whose frames all lie inside one action segment is scored against the video's sidecar. The
videos: the training renderer's documented look (a seed training never draws), and the two held-out
renderers the model never trained on (model/demo/heldout: other drawing code, other looks).

What the shipped weights (2026-12-02, trained by `python -m model.finetune`) must keep: >= 0.95 on the held-out video with the symmetric
views it declares (the default), and the time-reversed video swapping the pairs. Issue 14's targets
(>= 0.95 with a single view on every renderer) are asserted too; where the shipped weights miss them
the test is a strict expected failure that names the measured score, so a retrained checkpoint that
meets them turns it into a failure until the mark is removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from model.demo.heldout import RENDERERS, write_heldout
from model.demo.render import REVERSED, Scene, ground_truth
from streamer.testing.scoring import Score, Truth, run_file_mode, score

WEIGHTS = Path(__file__).resolve().parents[2] / "model" / "weights" / "motion-demo"
HELD_OUT_SEED = 20261124  # the dataset writer draws its scene seeds from a NumPy stream; this one is written only here
SECONDS, FPS, WIDTH, HEIGHT = 48, 25, 160, 120
# per held-out renderer: (seed, width, height, fps), seeds apart from benchmarks.demo_accuracy's
HELD_OUT = {"sdf": [(61, 320, 240, 25), (62, 480, 270, 30)], "studio": [(71, 320, 240, 25), (72, 400, 300, 15)]}
ROTATIONS = frozenset({"rotate_cw", "rotate_ccw"})
#: issue 14's single-view targets the shipped weights miss (measured 2026-12-02, the same videos)
MISSED = {"sdf": "fp32 0.918, int8 0.922 over 231 windows (rotations read as moves)"}

pytestmark = pytest.mark.skipif(not (WEIGHTS / "model.safetensors").is_file(),
                                reason="model/weights/motion-demo is not trained yet (docs/DEMO_MODEL.md says how)")


def _write(path: Path, frames) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Stream id -> (video, truth): the training renderer's held-out video forwards and backwards (lossy
    MPEG-4), and each held-out renderer's videos."""
    folder = tmp_path_factory.mktemp("demo")
    scene = Scene(HELD_OUT_SEED, WIDTH, HEIGHT, FPS)
    n = SECONDS * FPS
    frames = [scene.render(i) for i in range(n)]
    truth = Truth.from_sidecar(ground_truth(scene, n))
    _write(folder / "forward.mp4", frames)
    _write(folder / "backward.mp4", frames[::-1])
    out = {"forward": (folder / "forward.mp4", truth),
           "backward": (folder / "backward.mp4",
                        Truth([REVERSED[x] for x in truth.labels[::-1]], truth.segment[::-1]))}
    for name, specs in HELD_OUT.items():
        for seed, width, height, fps in specs:
            path = folder / f"{name}-{seed}.mp4"
            write_heldout(path, RENDERERS[name](seed, width, height), seed, 40.0, fps)
            out[path.stem] = (path, Truth.read(path))
    return out


@pytest.fixture(scope="module")
def scores(videos) -> dict[str, dict[str, Score]]:
    """precision -> stream id -> score, one run per precision over every forward video."""
    forward = {sid: path for sid, (path, _) in videos.items() if sid != "backward"}
    out = {}
    for precision in ("fp32", "int8"):
        results = run_file_mode(forward, "--model", "motion-demo", "--precision", precision, "--views", "single",
                                "--threads", "2")
        out[precision] = {sid: score(results[sid], videos[sid][1]) for sid in forward}
    return out


def pooled(scores: dict[str, Score], prefix: str) -> Score:
    total = Score()
    for sid, s in scores.items():
        if sid.startswith(prefix):
            total = total.add(s)
    return total


def _target(renderer: str):
    if renderer not in MISSED:
        return renderer
    return pytest.param(renderer, marks=pytest.mark.xfail(strict=True, reason=f"issue 14 target not met by the "
                                                          f"shipped weights: {MISSED[renderer]}"))


@pytest.mark.parametrize("renderer", [_target(r) for r in ("forward", "sdf", "studio")])
def test_window_accuracy_single_view_fp32_and_int8(scores, renderer):
    """>= 0.95 of the windows inside one segment, one view, in fp32 and in int8, on the training renderer's
    held-out video and on each held-out renderer's videos."""
    s32, s8 = pooled(scores["fp32"], renderer), pooled(scores["int8"], renderer)
    assert s32.total >= 90 and s8.total == s32.total  # enough windows, the same ones in both runs
    assert s32.accuracy >= 0.95, f"{renderer} fp32: {s32.accuracy:.3f} over {s32.total} windows; errors {s32.errors()}"
    assert s8.accuracy >= 0.95, f"{renderer} int8: {s8.accuracy:.3f} over {s8.total} windows; errors {s8.errors()}"
    assert abs(s32.accuracy - s8.accuracy) <= 0.02, f"{renderer}: int8 {s8.accuracy:.3f} vs fp32 {s32.accuracy:.3f}"


@pytest.fixture(scope="module")
def default_views(videos) -> dict[str, list[dict]]:
    """Results with the views the checkpoint declares (the default): the forward video in fp32 and int8,
    the backward one in fp32."""
    out = {}
    for precision in ("fp32", "int8"):
        out[precision] = run_file_mode({"forward": videos["forward"][0]}, "--model", "motion-demo", "--precision",
                                       precision, "--threads", "2")["forward"]
    out["backward"] = run_file_mode({"backward": videos["backward"][0]}, "--model", "motion-demo", "--precision",
                                    "fp32", "--threads", "2")["backward"]
    return out


def test_held_out_video_with_the_declared_views_fp32_and_int8(videos, default_views):
    truth = videos["forward"][1]
    assert {r["model"]["views"] for p in ("fp32", "int8") for r in default_views[p]} == {8}
    s32, s8 = score(default_views["fp32"], truth), score(default_views["int8"], truth)
    assert s32.total >= 90 and s8.total == s32.total
    assert s32.accuracy >= 0.95, f"fp32: {s32.accuracy:.3f} over {s32.total} windows; errors {s32.errors()}"
    assert s8.accuracy >= 0.95, f"int8: {s8.accuracy:.3f} over {s8.total} windows; errors {s8.errors()}"
    assert abs(s32.accuracy - s8.accuracy) <= 0.02, f"int8 {s8.accuracy:.3f} vs fp32 {s32.accuracy:.3f}"


def test_time_reversed_video_swaps_the_reversed_pairs(videos, default_views):
    truth = videos["backward"][1]
    results = default_views["backward"]
    s = score(results, truth, ROTATIONS)
    assert s.total >= 60 and s.accuracy >= 0.9, f"reversed video: {s.accuracy:.3f} against the swapped labels; " \
                                                f"errors {s.errors()}"
    # and the swap itself: on the backward video, windows of forward 'move_left' read 'move_right', ...
    for first, second in (("move_left", "move_right"), ("move_up", "move_down"), ("grow", "shrink")):
        for shown in (first, second):
            seen = sum(v for (t, _), v in s.pairs.items() if t == shown)
            if seen:
                swapped = s.pairs.get((shown, shown), 0) / seen
                assert swapped >= 0.8, f"{shown}: only {swapped:.2f} of its backward windows read {shown}"
    # rotations: of the backward rotation windows read as a rotation, the direction is the swapped one
    rotations = score(results, truth, frozenset(truth.labels) - ROTATIONS)
    as_rotation = {k: v for k, v in rotations.pairs.items() if k[1] in ROTATIONS}
    turned = sum(as_rotation.values())
    assert turned >= 20, f"only {turned} backward rotation windows read as a rotation: {rotations.pairs}"
    right = sum(v for (t, p), v in as_rotation.items() if t == p) / turned
    assert right >= 0.9, f"backward rotations: direction right on {right:.2f} of {turned}: {rotations.pairs}"


def test_the_checkpoint_declares_its_training():
    """training.json beside the weights records the one command that made them (docs/DEMO_MODEL.md)."""
    report = json.loads((WEIGHTS / "training.json").read_text())
    assert report["command"].startswith("python -m model.finetune ") and "--prior motion-demo" in report["command"]
    assert report["stopped_early"] is None and len(report["confusion_val"]) == 9
