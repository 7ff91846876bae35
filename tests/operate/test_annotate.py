"""Annotated video: the right label on the right frame, and a real run writing an MP4 with text on it."""

from __future__ import annotations

import feeds
import numpy as np

from streamer.ops.annotate import AnnotateConfig, Annotator, draw, output_path
from streamer.core.stats import StatsRegistry
from model.demo.render import Scene, write_video

BOX = (slice(0, 20), slice(0, 60))  # where the text box is on a 160x120 frame
AWAY = (slice(70, 120), slice(100, 160))  # far from it


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_each_frame_shows_the_newest_result_that_ended_at_or_before_it(tmp_path):
    stats = StatsRegistry()
    stats.add("cam", "synthetic://").state = "running"
    out = tmp_path / "ann.avi"  # MJPG: close enough to compare drawings
    annotator = Annotator(AnnotateConfig(path=str(out)), ["cam"], stats, fps_for=lambda s: 25.0)
    annotator.start()
    ramp = np.linspace(60, 180, 160, dtype=np.float32)[None, :, None]  # smooth frames: MJPG keeps them close
    frames = [np.broadcast_to(ramp + i, (120, 160, 3)).astype(np.uint8) for i in range(30)]
    preprocess = annotator.tap("cam", lambda f: f.shape, wait=True)
    assert [preprocess(f) for f in frames[:20]] == [(120, 160, 3)] * 20  # the wrapped preprocess still runs
    for end, label in ((7, "grow"), (12, "shrink"), (17, "still")):
        annotator.on_sent("result.cam", {"type": "result", "stream": "cam", "window": {"frame_indices": [end - 7, end]},
                                         "top_k": [{"label": label, "score": 0.75}]})
    for f in frames[20:]:
        preprocess(f)
    annotator.stop()
    assert annotator.error is None
    written = feeds.read_frames(out)
    assert len(written) == 30

    def expected(i: int) -> str:
        return "(waiting for the first window)" if i < 7 else "grow 0.75" if i < 12 else \
            "shrink 0.75" if i < 17 else "still 0.75"

    labels = ["(waiting for the first window)", "grow 0.75", "shrink 0.75", "still 0.75"]
    for i, got in enumerate(written):
        scores = {text: diff(got, draw(frames[i], [text, f"cam running #{i}"])) for text in labels}
        assert min(scores, key=scores.get) == expected(i), (i, scores)
        assert diff(got[AWAY], frames[i][AWAY]) < 6  # only compression noise away from the text


def test_several_streams_get_one_file_each(tmp_path):
    assert output_path(tmp_path / "out.mp4", "cam", several=False) == tmp_path / "out.mp4"
    assert output_path(tmp_path / "out.mp4", "cam", several=True) == tmp_path / "out.cam.mp4"


def test_run_writes_an_annotated_mp4_that_differs_where_the_text_is(tiny_model, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_video(clip, Scene(4, 160, 120, 25.0), 60)
    out = tmp_path / "annotated.mp4"
    with feeds.Pipeline(["--source", f"clip={clip}", "--mode", "file", "--model", str(tiny_model),
                         "--publish", feeds.free_tcp_address(), "--annotate", str(out)], tmp_path / "run.log") as run:
        assert run.proc.wait(120) == 0, run.stderr()
    assert "annotated video" in run.stderr()
    source, annotated = feeds.read_frames(clip), feeds.read_frames(out)
    assert len(annotated) == len(source) == 60
    assert annotated[0].shape == source[0].shape
    for i in (0, 30, 59):
        assert diff(annotated[i][BOX], source[i][BOX]) > 30, i  # the text box
        assert diff(annotated[i][AWAY], source[i][AWAY]) < 6, i  # the rest is the input (re-encoded)
    # the first frames wait for the first window, later ones show a label: the drawn text changes
    assert diff(annotated[0][BOX], annotated[59][BOX]) > 10


def test_a_window_needs_a_display(monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    stats = StatsRegistry()
    stats.add("cam", "x")
    annotator = Annotator(AnnotateConfig(window=True), ["cam"], stats)
    assert annotator.show is False
    assert "no display" in caplog.text
    monkeypatch.setenv("DISPLAY", ":0")
    assert Annotator(AnnotateConfig(window=True), ["cam"], stats).show is True


def test_each_frame_shows_the_state_it_was_read_in_not_the_state_at_drawing_time(tmp_path):
    stats = StatsRegistry()
    cam = stats.add("cam", "synthetic://")
    cam.state = "running"
    out = tmp_path / "ann.avi"
    annotator = Annotator(AnnotateConfig(path=str(out)), ["cam"], stats, fps_for=lambda s: 25.0)
    annotator.start()
    ramp = np.linspace(60, 180, 160, dtype=np.float32)[None, :, None]
    frames = [np.broadcast_to(ramp + i, (120, 160, 3)).astype(np.uint8) for i in range(20)]
    preprocess = annotator.tap("cam", lambda f: None, wait=True)
    for f in frames:  # no result covers them: all are still pending when the stream ends
        preprocess(f)
    cam.state = "ended"  # as a file source does after its last frame, before the annotator has drawn them
    annotator.stop()
    written = feeds.read_frames(out)
    assert len(written) == 20
    for i, got in enumerate(written):
        texts = {state: diff(got, draw(frames[i], ["(waiting for the first window)", f"cam {state} #{i}"]))
                 for state in ("running", "ended")}
        assert min(texts, key=texts.get) == "running", (i, texts)
