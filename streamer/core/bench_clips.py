"""The clips ``--bench`` measures top-1 agreement on: real windows where there are any.

* the built-in ``motion-demo``: windows of its held-out video, rendered by the synthetic renderer
  from a seed training never draws (:data:`DEMO_HELD_OUT_SEED`, the one tests/demo holds out), sampled
  as the default config samples a live stream (8 frames over 1.28 s at 25 fps: every 4th frame);
* a user's checkpoint with ``--bench-source``: the first windows of that video (file or URL);
* otherwise synthetic moving shapes, which are not the checkpoint's domain (the bench says so).

Every frame goes through the pipeline's own preprocessing (a :class:`streamer.core.device.DeviceStage`).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DEMO = "motion-demo"
DEMO_HELD_OUT_SEED = 20261124  #: the held-out video's scene seed (training draws its seeds elsewhere)
DEMO_VIDEO = dict(width=160, height=120, fps=25)  #: the held-out video's geometry, as in tests/demo
DEMO_STRIDE, DEMO_HOP = 4, 2  #: frames between a window's samples (8 over 1.28 s at 25 fps), between windows


def windows(frames: list, n: int, num_frames: int, stride: int, hop: int):
    """Up to ``n`` windows ``(n, T, 3, h, w)`` of ``num_frames`` frames ``stride`` apart, starting every ``hop``."""
    import torch

    span = (num_frames - 1) * stride + 1
    starts = range(0, max(len(frames) - span + 1, 0), hop)
    clips = [torch.stack(frames[s:s + span:stride]) for s in list(starts)[:n]]
    if not clips:
        raise ValueError(f"{len(frames)} frames are too few for one window of {num_frames} x stride {stride}")
    return torch.stack(clips)


def demo_held_out_clips(n: int, num_frames: int, stage):
    """``n`` windows of the motion-demo's held-out video."""
    from model.demo.render import Scene

    scene = Scene(DEMO_HELD_OUT_SEED, DEMO_VIDEO["width"], DEMO_VIDEO["height"], DEMO_VIDEO["fps"])
    count = (n - 1) * DEMO_HOP + (num_frames - 1) * DEMO_STRIDE + 1
    frames = [stage(scene.render(i)) for i in range(count)]
    return _synced(windows(frames, n, num_frames, DEMO_STRIDE, DEMO_HOP), stage)


def source_clips(url: str, n: int, num_frames: int, stage, stride: int = 1):
    """The first ``n`` windows of the video at ``url`` (consecutive frames ``stride`` apart, half-overlapping)."""
    import cv2

    from model.errors import SourceError

    hop = max(1, (num_frames * stride) // 2)
    need = (n - 1) * hop + (num_frames - 1) * stride + 1
    cap = cv2.VideoCapture(url)
    frames = []
    try:
        while len(frames) < need:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(stage(frame))
    finally:
        cap.release()
    if len(frames) < (num_frames - 1) * stride + 1:
        raise SourceError(f"--bench-source {url}: read {len(frames)} frames, a window needs "
                          f"{(num_frames - 1) * stride + 1}; pass a longer video")
    clips = windows(frames, n, num_frames, stride, hop)
    if len(clips) < n:
        log.warning("--bench-source %s: %d windows (fewer than the %d asked for)", url, len(clips), n)
    return _synced(clips, stage)


def synthetic_clips(n: int, num_frames: int, stage, seed: int = 0):
    """``n`` clips ``(n, T, 3, h, w)``: consecutive frames of synthetic scenes (moving shapes)."""
    import torch

    from streamer.sources.synthetic import SyntheticCapture

    clips = []
    per_source = 4
    for s in range((n + per_source - 1) // per_source):
        cap = SyntheticCapture(seed=seed + s, fps=30.0, width=320, height=240)
        frames = []
        for _ in range(per_source * num_frames):
            ok, frame = cap.read()
            frames.append(stage(frame))
        cap.release()
        for k in range(per_source):
            clips.append(torch.stack(frames[k * num_frames:(k + 1) * num_frames]))  # (T, 3, h, w)
    return _synced(torch.stack(clips[:n]), stage)  # (n, T, 3, h, w)


def _synced(clips, stage):
    if stage.cuda:
        import torch

        torch.cuda.current_stream(stage.device).synchronize()
    return clips


def bench_clips(source: str, bench_source: str | None, n: int, num_frames: int, stage) -> tuple[object, str]:
    """(clips, what they are) for ``source``: the demo's held-out video, ``bench_source``, or synthetic."""
    if bench_source:
        return source_clips(bench_source, n, num_frames, stage), f"the first {n} windows of {bench_source}"
    if source == DEMO:
        return demo_held_out_clips(n, num_frames, stage), f"{n} windows of the motion-demo's held-out video"
    return (synthetic_clips(n, num_frames, stage),
            f"{n} synthetic moving-shape clips (not this checkpoint's domain: pass --bench-source VIDEO for real "
            "windows)")


__all__ = ["bench_clips", "demo_held_out_clips", "source_clips", "synthetic_clips", "windows", "DEMO_HELD_OUT_SEED"]
