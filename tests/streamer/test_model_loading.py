"""The model as the pipeline loads it (streamer/core/loading.py): the window's sampling comes from the
checkpoint, a config that overrides it says so once, and a model of a narrow domain warns on other video."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import feeds
from model import load_model
from model.demo.render import Scene, write_video
from streamer.config import SourceConfig, WindowConfig
from streamer.core.loading import resolve_window, warn_outside_domain
from streamer.sources.table import plan_source

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def demo():
    return load_model("motion-demo")


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("window", [WindowConfig(), WindowConfig(hop_s=0.24, freshness_s=1.0),
                                    WindowConfig(num_frames=8, span_s=1.28)], ids=["empty", "hop-only", "same"])
def test_the_window_samples_as_the_model_was_trained_and_says_nothing(demo, window, caplog):
    with caplog.at_level(logging.WARNING):
        plan = resolve_window(window, demo)
    assert (plan.num_frames, plan.span_s, plan.stride) == (8, 1.28, None)
    assert plan.hop_s == (window.hop_s or 0.16) and plan.hop is None
    assert warnings(caplog) == []


@pytest.mark.parametrize("window, used", [(WindowConfig(stride=2), "8 frames, one in 2"),
                                          (WindowConfig(num_frames=16), "16 frames over 1.28 s"),
                                          (WindowConfig(span_s=4.0, hop=3), "8 frames over 4 s")])
def test_a_config_that_overrides_the_declared_sampling_wins_with_one_warning(demo, window, used, caplog):
    with caplog.at_level(logging.WARNING):
        plan = resolve_window(window, demo)
    assert (plan.num_frames, plan.stride, plan.span_s) == (window.num_frames or 8, window.stride,
                                                           window.span_s or (None if window.stride else 1.28))
    [message] = warnings(caplog)
    assert used in message and "motion-demo was trained with (8 frames over 1.28 s)" in message


def test_a_model_that_declares_nothing_takes_its_frames_consecutively(demo, caplog):
    plain = dataclasses.replace(demo, sampling=None)
    with caplog.at_level(logging.WARNING):
        plan = resolve_window(WindowConfig(), plain)
        chosen = resolve_window(WindowConfig(span_s=2.0), plain)
    assert (plan.num_frames, plan.stride, plan.span_s, plan.hop) == (8, 1, None, 1)
    assert (chosen.span_s, chosen.hop_s) == (2.0, 0.25)
    assert warnings(caplog) == []  # nothing declared, nothing overridden


def test_the_demo_warns_once_naming_the_sources_that_show_other_video(demo, tmp_path, caplog):
    rendered = tmp_path / "shapes.avi"
    write_video(rendered, Scene(1, 64, 48, 10), 5)
    (tmp_path / "street.avi").write_bytes(rendered.read_bytes())  # a video without the renderer's sidecar
    plans = [plan_source(SourceConfig(id=i, url=u)) for i, u in (
        ("live", "synthetic://actions?seed=1"), ("file", str(rendered)), ("file2", f"file://{rendered}"),
        ("street", str(tmp_path / "street.avi")), ("bars", "testpattern://?fps=25"))]
    with caplog.at_level(logging.WARNING):
        assert warn_outside_domain(demo, plans) == ["street", "bars"]
        assert warn_outside_domain(dataclasses.replace(demo, domain=None), plans) == []
        assert warn_outside_domain(demo, plans[:3]) == []
    [message] = warnings(caplog)
    assert "motion-demo knows only synthetic-shapes" in message and "street, bars" in message


def test_a_config_with_only_sources_runs_the_demo_with_its_trained_span(tmp_path, validate):
    """No window: in the config at all: motion-demo's declared 8 frames over 1.28 s (every 4th frame at
    25 fps), not 8 consecutive frames; the results say the model's domain."""
    config = tmp_path / "mine.yaml"
    config.write_text('sources:\n  - {id: demo, url: "synthetic://actions?seed=3&fps=25&frames=60", mode: file}\n')
    # the run holds capture until the subscriber joined, on the port the system gave it (read from its log)
    with feeds.Pipeline(["--config", str(config), "--publish", feeds.ANY_PORT, "--wait-subscribers", "1",
                         "--views", "single"], tmp_path / "run.log") as run:
        sub = subprocess.Popen([sys.executable, "-m", "streamer.subscribe", run.endpoint(), "--json", "--timeout", "60",
                                "--count", "3"], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        try:
            code = run.proc.wait(180)
            out, err = sub.communicate(timeout=60)
        finally:
            sub.kill()
    stderr = run.stderr()
    assert code == 0, stderr
    assert "overrides" not in stderr and "knows only" not in stderr  # nothing to warn about
    results = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(results) == 3, err
    for r in results:
        validate(r)
        idx = r["window"]["frame_indices"]
        assert [b - a for a, b in zip(idx, idx[1:])] == [4] * 7  # 0.16 s apart at 25 fps (file mode: media time)
        assert r["model"]["name"] == "motion-demo" and r["model"]["domain"] == "synthetic-shapes"
