"""Score a model through the real pipeline on labeled videos: ``run_stream.py`` in file mode, every
result collected, each window whose frames lie in one action segment scored against the sidecar.

Used by tests/demo (the demo model's accuracy gates) and ``python -m benchmarks.demo_accuracy``
(the per-renderer confusion matrices in docs/DEMO_MODEL.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from streamer.testing.processes import ANY_PORT, DEFAULT_CONFIG, StreamProcess


@dataclass(frozen=True)
class Truth:
    """Per-frame labels of one video and the segment each frame belongs to."""

    labels: list[str]
    segment: list[int]

    @classmethod
    def from_sidecar(cls, sidecar: dict) -> Truth:
        segment = [k for k, seg in enumerate(sidecar["segments"]) for _ in range(seg["end_frame"] - seg["start_frame"])]
        return cls(list(sidecar["labels"]), segment)

    @classmethod
    def read(cls, video: Path) -> Truth:
        return cls.from_sidecar(json.loads(video.with_suffix(".json").read_text()))


@dataclass
class Score:
    """Windows inside one segment: how many, how many right, and (truth, predicted) counts."""

    total: int = 0
    right: int = 0
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.right / max(self.total, 1)

    def add(self, other: Score) -> Score:
        pairs = dict(self.pairs)
        for k, v in other.pairs.items():
            pairs[k] = pairs.get(k, 0) + v
        return Score(self.total + other.total, self.right + other.right, pairs)

    def errors(self) -> dict[tuple[str, str], int]:
        return {k: v for k, v in self.pairs.items() if k[0] != k[1]}


def score(results: list[dict], truth: Truth, skip: frozenset = frozenset()) -> Score:
    """Top-1 against the truth of each window whose frames all lie in one segment (truth not in ``skip``)."""
    out = Score()
    for r in results:
        idx = r["window"]["frame_indices"]
        if truth.segment[idx[0]] != truth.segment[idx[-1]]:
            continue  # straddles a change of action: not scored
        expected, got = truth.labels[idx[-1]], r["top_k"][0]["label"]
        if expected in skip:
            continue
        out.total += 1
        out.right += expected == got
        out.pairs[(expected, got)] = out.pairs.get((expected, got), 0) + 1
    return out


def run_file_mode(videos: dict[str, Path], *extra: str, timeout: float = 600.0) -> dict[str, list[dict]]:
    """Every result of one ``run_stream.py`` run over ``videos`` (stream id -> file) in file mode, by stream.

    The run binds a port the system picks and waits for one subscriber; the collector subscribes on the
    endpoint the run logs (no free-port guess)."""
    import tempfile

    from streamer.subscribe import Collector

    sources = [arg for sid, path in videos.items() for arg in ("--source", f"{sid}={path}")]
    args = ["--config", str(DEFAULT_CONFIG), *sources, "--mode", "file", "--publish", ANY_PORT,
            "--wait-subscribers", "1", *extra]
    with tempfile.TemporaryDirectory() as tmp, StreamProcess(args, Path(tmp) / "run.log") as run:
        collector = Collector(run.endpoint(), ("result.",))
        try:
            code = run.proc.wait(timeout)
        finally:
            collector.close(drain_s=1.0)
        if code != 0:
            raise RuntimeError(f"run_stream.py failed ({code}): {run.stderr()[-2000:]}")
    by_stream: dict[str, list[dict]] = {sid: [] for sid in videos}
    for message in collector.messages:
        by_stream[message["stream"]].append(message)
    return by_stream


def confusion_table(s: Score, labels: tuple[str, ...]) -> str:
    """A markdown confusion matrix (rows: truth, columns: predicted)."""
    short = [name.replace("move_", "").replace("rotate_", "") for name in labels]
    lines = ["| truth \\ predicted | " + " | ".join(short) + " | recall |",
             "|---" * (len(labels) + 2) + "|"]
    for truth, name in zip(labels, short):
        row = [s.pairs.get((truth, p), 0) for p in labels]
        n = sum(row)
        recall = f"{row[labels.index(truth)] / n:.2f}" if n else "-"
        lines.append(f"| {name} | " + " | ".join(str(v) if v else "." for v in row) + f" | {recall} |")
    return "\n".join(lines)
