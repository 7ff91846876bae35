"""Clip sampling by frame stride and by capture timestamp, with jittery and dropped frames."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.windows import frames_needed, nearest, stride_indices, time_targets


def test_stride_indices():
    assert stride_indices(224, 8, 32) == [0, 32, 64, 96, 128, 160, 192, 224]
    assert stride_indices(9, 4, 1) == [6, 7, 8, 9]


def test_time_targets_cover_the_span():
    t = time_targets(10.0, 8, 8.0)
    assert np.allclose(np.diff(t), 1.0) and t[-1] == 10.0 and t[0] == 3.0


@settings(max_examples=60, deadline=None)
@given(fps=st.floats(10, 60), jitter=st.floats(0, 0.3), drop=st.floats(0, 0.4), seed=st.integers(0, 10_000))
def test_time_sampling_keeps_the_span_under_jitter_and_drops(fps, jitter, drop, seed):
    rng = np.random.default_rng(seed)
    interval = 1.0 / fps
    n = int(12 * fps)
    ts = np.arange(n) * interval + rng.uniform(-jitter, jitter, n) * interval  # jittered capture times
    keep = rng.uniform(size=n) >= drop
    keep[-1] = True
    ts = np.sort(ts[keep])
    span, frames = 4.0, 8
    targets = time_targets(ts[-1], frames, span)
    picked = ts[nearest(ts, targets)]
    # every sample is the closest frame to its target...
    for target, got in zip(targets, picked):
        assert abs(got - target) <= np.min(np.abs(ts - target)) + 1e-12
    # ...so the clip spans span*(T-1)/T seconds, give or take one gap between kept frames
    worst_gap = np.max(np.diff(ts))
    assert abs((picked[-1] - picked[0]) - span * (frames - 1) / frames) <= worst_gap
    assert np.all(np.diff(picked) >= 0)


def test_nearest_prefers_the_closer_frame():
    ts = np.array([0.0, 1.0, 2.0, 4.0])
    assert nearest(ts, np.array([-1.0, 0.4, 0.6, 2.9, 3.1, 9.0])).tolist() == [0, 0, 1, 2, 3, 3]


def test_frames_needed_covers_window_and_hop():
    assert frames_needed(8, 32, None, 8, None, 30.0) >= 7 * 32 + 1 + 8
    assert frames_needed(8, None, 8.5, None, 1.0, 30.0) >= int(9.5 * 30)
