"""S9: a hostile or broken source cannot exhaust the process: caps on frame size, frame rate and
the number of streams, each a stated policy with a counter or a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "streamer"))

from test_capture import ScriptedCapture, run_capture  # noqa: E402

from model.errors import ConfigError  # noqa: E402
from streamer.sources.pacing import TokenBucket  # noqa: E402
from streamer.config import AppConfig, RunConfig, SourceConfig, SourceOptions  # noqa: E402
from streamer.configfile import build_config  # noqa: E402


class BigFrames(ScriptedCapture):
    def read(self):
        ok, frame = super().read()
        return ok, (np.zeros((64, 64, 3), np.uint8) if self.i % 2 else frame) if ok else None


def test_token_bucket_keeps_the_average_rate_and_allows_a_buffered_burst():
    bucket = TokenBucket(10.0)
    flood = sum(bucket.take(i * 0.001) for i in range(2000))  # 1000 frames/s for 2 s
    assert 10 + 20 - 2 <= flood <= 10 + 20 + 2  # one second of burst, then 10 a second
    calm = TokenBucket(10.0)
    assert all(calm.take(i * 0.1) for i in range(50))  # at the rate: nothing lost
    burst = TokenBucket(30.0)
    assert all(burst.take(5.0 + i * 0.001) for i in range(30))  # a camera's buffered second arrives at once


def test_live_flood_is_cut_to_max_fps_and_counted():
    _, _, ring, stats = run_capture("rtsp", [ScriptedCapture([True] * 300)], live=True,
                                    options=SourceOptions(max_fps=5.0),
                                    until=lambda states: states[-1][0] == "backoff")  # the fake source ran out
    # 300 frames read as fast as the fake source gives them: the burst allowance (5) passes, the rest is counted
    assert 5 <= stats.frames <= 15, stats.frames
    assert stats.drops["rate"] == 300 - stats.frames
    assert ring.head == stats.frames


def test_file_mode_is_not_rate_capped():
    _, _, _, stats = run_capture("file", [ScriptedCapture([True] * 60)], live=False,
                                 options=SourceOptions(max_fps=5.0))
    assert stats.frames == 60 and stats.drops["rate"] == 0


def test_oversize_frames_are_dropped_and_counted():
    _, _, ring, stats = run_capture("file", [BigFrames([True] * 20)], live=False,
                                    options=SourceOptions(max_pixels=8 * 8))
    assert stats.drops["oversize"] == 10 and stats.frames == 10 and ring.head == 10


def test_too_many_sources_is_a_one_line_config_error():
    sources = tuple(SourceConfig(id=f"s{i}", url=f"testpattern://?fps=5&seed={i}") for i in range(5))
    with pytest.raises(ConfigError, match=r"5 sources, more than run.max_sources = 4; raise run.max_sources") as info:
        AppConfig(sources=sources, run=RunConfig(max_sources=4))
    assert "\n" not in str(info.value)
    assert len(AppConfig(sources=sources, run=RunConfig(max_sources=5)).sources) == 5
    with pytest.raises(ConfigError, match="max_sources"):
        build_config({"sources": ["testpattern://"], "run": {"max_sources": 0}})
    with pytest.raises(ConfigError, match="max_fps"):
        build_config({"sources": [{"id": "a", "url": "testpattern://", "options": {"max_fps": -1}}]})
