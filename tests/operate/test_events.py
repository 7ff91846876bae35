"""EventTracker on its own: scores derived from a synthetic scene's ground truth plus noise.

Each window's score for a class is the fraction of its frames whose true label is that class, plus
noise, normalized like a softmax output. The real pipeline with the demo model is in test_pipeline.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from model.errors import ConfigError
from streamer.configfile import build_config
from streamer.config import ClassOverride, EventRule, EventsConfig
from streamer.ops.events import StreamEvents
from model.demo.render import CLASSES, Scene

FPS = 25.0
NUM_FRAMES, STRIDE, HOP = 8, 2, 5


def truth_labels(seed: int, num_frames: int) -> tuple[list[str], list]:
    """Per-frame labels of whole segments only (the video ends where the last whole segment does)."""
    scene = Scene(seed, 64, 48, FPS)
    segments = [s for s in scene.segments_until(num_frames + int(5 * FPS)) if s.end <= num_frames]
    return [s.label for s in segments for _ in range(s.num_frames)], segments


def results_from_truth(labels: list[str], rng: np.random.Generator, noise: float) -> list[dict]:
    """One result per window (stride STRIDE, hop HOP): softmax of (6 x label fraction + noise), top 5 kept."""
    out = []
    first_end = (NUM_FRAMES - 1) * STRIDE
    for seq, end in enumerate(range(first_end, len(labels), HOP)):
        idx = list(range(end - first_end, end + 1, STRIDE))
        frac = np.array([sum(labels[i] == c for i in idx) / NUM_FRAMES for c in CLASSES])
        logits = 6.0 * frac + rng.normal(0.0, noise, len(CLASSES))
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:5]
        out.append({
            "type": "result", "stream": "cam", "seq": seq,
            "window": {"frame_indices": idx, "frame_ts": [1000.0 + i / FPS for i in idx],
                       "start_ts": 1000.0 + idx[0] / FPS, "end_ts": 1000.0 + idx[-1] / FPS},
            "top_k": [{"label": CLASSES[j], "score": float(probs[j])} for j in order],
        })
    return out


def run_tracker(results: list[dict], config: EventsConfig, media_clock: bool = True) -> list[dict]:
    tracker = StreamEvents("cam", config, fps=(lambda: FPS) if media_clock else (lambda: None), session="test")
    events = []
    for r in results:
        events.extend(tracker.observe(r))
    events.extend(tracker.close("stream ended"))
    return events


def assert_one_event_per_segment(events: list[dict], segments, total_frames: int) -> None:
    ends = [e for e in events if e["phase"] == "end"]
    starts = [e for e in events if e["phase"] == "start"]
    assert len(starts) == len(ends) == len(segments), (
        [(e["label"], e["start_frame"]) for e in starts], [(s.label, s.start) for s in segments])
    # ids: one per event, shared by its phases
    assert len({e["id"] for e in starts}) == len(starts)
    assert [e["id"] for e in starts] == [e["id"] for e in ends]
    for seg, start, end in zip(segments, starts, ends):
        assert start["label"] == end["label"] == seg.label
        # the first window ends at frame 14 and the last at the final hop: the truth is clipped to what windows see
        first_seen = (NUM_FRAMES - 1) * STRIDE
        true_start = seg.start if seg.start > 0 else 0
        true_end = min(seg.end, total_frames)
        assert abs(start["start_frame"] - true_start) <= HOP or (seg.start == 0 and start["start_frame"] <= first_seen)
        assert abs(end["end_frame"] - true_end) <= HOP
        assert end["end_ts"] > end["start_ts"] == start["start_ts"]
        assert 0.0 < end["peak_score"] <= 1.0


@pytest.mark.parametrize("smoothing", ["k_of_n", "ema"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_event_per_true_segment_within_one_hop(seed, smoothing):
    labels, segments = truth_labels(seed, int(30 * FPS))
    total = len(labels)
    results = results_from_truth(labels, np.random.default_rng(seed), noise=0.5)
    config = EventsConfig(default=EventRule(smoothing=smoothing, alpha=0.6))
    events = run_tracker(results, config)
    assert_one_event_per_segment(events, segments, total)


def test_flicker_is_suppressed_by_min_duration_and_hysteresis():
    # single-window blips of another class: k-of-n (2 of 3) ignores them, the true class stays one event
    labels = ["still"] * 400
    results = results_from_truth(labels, np.random.default_rng(0), noise=0.0)
    for i in (10, 30, 50, 60):
        results[i]["top_k"] = [{"label": "grow", "score": 0.9}, {"label": "still", "score": 0.1}]
    events = run_tracker(results, EventsConfig(default=EventRule(k=2, n=3, min_duration_s=0.5)))
    assert [(e["phase"], e["label"]) for e in events if e["phase"] != "update"] == [("start", "still"), ("end", "still")]
    # a two-window blip passes k-of-n but is shorter than min_duration_s: never announced
    for i in (70, 71):
        results[i]["top_k"] = [{"label": "grow", "score": 0.9}, {"label": "still", "score": 0.1}]
    events = run_tracker(results, EventsConfig(default=EventRule(k=2, n=3, min_duration_s=0.5)))
    assert not [e for e in events if e["label"] == "grow"]


def test_no_min_duration_lets_a_two_window_blip_through():
    labels = ["still"] * 200
    results = results_from_truth(labels, np.random.default_rng(0), noise=0.0)
    for i in (20, 21):
        results[i]["top_k"] = [{"label": "grow", "score": 0.9}, {"label": "still", "score": 0.1}]
    config = EventsConfig(default=EventRule(k=2, n=3, min_duration_s=0.0, cooldown_s=0.0))
    grow = [e for e in run_tracker(results, config) if e["label"] == "grow"]
    assert [e["phase"] for e in grow] == ["start", "end"]


def test_cooldown_blocks_a_restart_of_the_same_class():
    # grow for 40 windows, 3 windows of still, grow again: with a long cooldown the second grow is not announced
    labels = ["grow"] * (40 * HOP) + ["still"] * (6 * HOP) + ["grow"] * (40 * HOP)
    results = results_from_truth(labels, np.random.default_rng(0), noise=0.0)
    long = EventsConfig(default=EventRule(cooldown_s=60.0, min_duration_s=0.0))
    short = EventsConfig(default=EventRule(cooldown_s=0.0, min_duration_s=0.0))
    count = lambda cfg: sum(e["phase"] == "start" and e["label"] == "grow" for e in run_tracker(results, cfg))  # noqa: E731
    assert count(short) == 2
    assert count(long) == 1


def test_updates_carry_the_same_id_and_a_rising_duration():
    labels = ["rotate_cw"] * int(10 * FPS)
    results = results_from_truth(labels, np.random.default_rng(0), noise=0.3)
    events = run_tracker(results, EventsConfig(update_interval_s=1.0))
    assert [e["phase"] for e in events][:1] == ["start"] and events[-1]["phase"] == "end"
    updates = [e for e in events if e["phase"] == "update"]
    assert 7 <= len(updates) <= 10
    assert {e["id"] for e in events} == {events[0]["id"]}
    durations = [e["duration_s"] for e in events]
    assert durations == sorted(durations)
    assert events[-1]["reason"] == "stream ended"
    assert events[-1]["end_frame"] == results[-1]["window"]["frame_indices"][-1]


@pytest.mark.parametrize("media_clock", [True, False])
def test_the_end_never_reports_a_shorter_duration_than_the_last_update(media_clock):
    # long true segments, an update at every window: with k_of_n (3 of 5) the smoothed score stays up for
    # two windows after the class's last supporting window, and each window is 1.1 s long; the end is
    # back-dated to the supporting windows, so an update that counted to its window's end outran the end
    labels, _ = truth_labels(11, int(60 * FPS))
    results = results_from_truth(labels, np.random.default_rng(11), noise=0.3)
    config = EventsConfig(default=EventRule(k=3, n=5), update_interval_s=0.1)
    events = run_tracker(results, config, media_clock=media_clock)
    ends = [e for e in events if e["phase"] == "end"]
    assert len(ends) >= 5
    for end in ends:
        updates = [e["duration_s"] for e in events if e["id"] == end["id"] and e["phase"] != "end"]
        assert updates and end["duration_s"] >= max(updates), (end["label"], updates[-3:], end["duration_s"])
        clock = (end["end_frame"] - end["start_frame"]) / FPS if media_clock else end["end_ts"] - end["start_ts"]
        assert abs(end["duration_s"] - clock) <= 0.05  # the same instants as end_frame/end_ts say


def test_disabled_class_and_per_class_thresholds():
    labels = ["grow"] * 200 + ["shrink"] * 200
    results = results_from_truth(labels, np.random.default_rng(0), noise=0.0)
    config = EventsConfig(classes={"grow": ClassOverride(enabled=False), "shrink": ClassOverride(enter=1.0)})
    events = run_tracker(results, config)
    assert events == []  # grow is off; shrink's window fractions of 1.0 after normalization stay below 1.0
    config = EventsConfig(classes={"grow": ClassOverride(enabled=False)})
    assert {e["label"] for e in run_tracker(results, config)} == {"shrink"}


def test_wall_clock_when_no_frame_rate():
    labels, segments = truth_labels(5, int(20 * FPS))
    results = results_from_truth(labels, np.random.default_rng(5), noise=0.3)
    events = run_tracker(results, EventsConfig(), media_clock=False)
    assert_one_event_per_segment(events, segments, len(labels))


def test_yaml_per_class_config_and_errors():
    cfg = build_config({"sources": ["x.mp4"], "events": {
        "default": {"smoothing": "ema", "alpha": 0.4, "enter": 0.7, "exit": 0.3},
        "classes": {"still": {"enabled": False}, "grow": {"enter": 0.8, "min_duration_s": 1.5}}}})
    assert cfg.events.rule("grow") == EventRule(smoothing="ema", alpha=0.4, enter=0.8, exit=0.3, min_duration_s=1.5)
    assert cfg.events.rule("still").enabled is False
    assert cfg.events.rule("shrink") == cfg.events.default
    with pytest.raises(ConfigError, match=r"^events\.classes\.grow\.exit: must be in \[0, enter=0\.3\]"):
        build_config({"sources": ["x.mp4"], "events": {"classes": {"grow": {"enter": 0.3}}}})
    with pytest.raises(ConfigError, match=r"^events\.classes\.grow\.entr: unknown key"):
        build_config({"sources": ["x.mp4"], "events": {"classes": {"grow": {"entr": 0.3}}}})
    with pytest.raises(ConfigError, match=r"^events\.default\.k: need 1 <= k <= n"):
        build_config({"sources": ["x.mp4"], "events": {"default": {"k": 4, "n": 3}}})
    with pytest.raises(ConfigError, match="not a label of the model"):
        cfg.events.check_labels(("move_left", "shrink"))


def test_the_embedded_default_emits_events():
    import run_stream

    cfg = run_stream.load_app_config(run_stream.build_parser().parse_args([]))
    assert cfg.events.enabled
    assert cfg.events.default.enabled and cfg.events.default.enter > cfg.events.default.exit
    assert not run_stream.load_app_config(run_stream.build_parser().parse_args(["--no-events"])).events.enabled


def test_a_lost_live_stream_ends_its_events_a_file_source_does_not():
    from streamer.ops.events import EventStage

    labels = ["grow"] * 200
    results = results_from_truth(labels, np.random.default_rng(0), noise=0.0)
    stalled = {"type": "status", "stream": "cam", "state": "stalled"}
    for live, want in ((True, ["start", "end"]), (False, ["start"])):
        sent = []
        stage = EventStage(EventsConfig(update_interval_s=100.0), lambda topic, msg: sent.append(msg),
                           live_for=lambda stream: live)
        for r in results[:20]:
            stage.on_sent("result.cam", r)
        stage.on_sent("status.cam", stalled)
        assert [m["phase"] for m in sent] == want, live
        if live:
            assert sent[-1]["reason"] == "stream stalled"
            assert sent[-1]["end_frame"] == results[19]["window"]["frame_indices"][-1]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), min_size=1, max_size=150),
       smoothing=st.sampled_from(["ema", "k_of_n"]), k=st.integers(1, 3), extra=st.integers(0, 3),
       enter=st.floats(0.3, 1.0), gap=st.floats(0.0, 0.3), min_duration=st.floats(0.0, 1.0),
       cooldown=st.floats(0.0, 2.0))
def test_any_score_sequence_gives_well_formed_events(scores, smoothing, k, extra, enter, gap, min_duration, cooldown):
    rule = EventRule(smoothing=smoothing, k=k, n=k + extra, enter=enter, exit=enter - gap,
                     min_duration_s=min_duration, cooldown_s=cooldown)
    labels = ["a", "b", "c"]
    results = []
    for seq, row in enumerate(scores):
        idx = list(range(seq * 5, seq * 5 + 15, 2))
        results.append({"window": {"frame_indices": idx, "start_ts": 100.0 + idx[0] / FPS, "end_ts": 100.0 + idx[-1] / FPS},
                        "top_k": [{"label": lab, "score": s} for lab, s in zip(labels, row)]})
    events = run_tracker(results, EventsConfig(default=rule, update_interval_s=0.5))
    by_id: dict[str, list[dict]] = {}
    for e in events:
        by_id.setdefault(e["id"], []).append(e)
    last_end: dict[str, int] = {}
    for phases in by_id.values():
        assert [p["phase"] for p in phases][0] == "start" and phases[-1]["phase"] == "end"
        assert all(p["phase"] == "update" for p in phases[1:-1])
        start, end = phases[0], phases[-1]
        assert start["start_frame"] <= end["end_frame"] and start["start_ts"] <= end["end_ts"]
        assert len({p["label"] for p in phases}) == 1 and len({p["start_frame"] for p in phases}) == 1
        assert 0.0 <= end["peak_score"] <= 1.0 and end["duration_s"] >= 0.0
        durations = [p["duration_s"] for p in phases]  # one clock: never shrinks, not even at the end
        assert durations == sorted(durations), durations
        # one class never has two events at once
        assert start["start_frame"] >= last_end.get(start["label"], -1)
        last_end[start["label"]] = end["end_frame"]
