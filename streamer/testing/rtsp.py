"""A real RTSP camera and a dead one, on loopback, for the tests and benchmarks that fault sources.

- :class:`RtspServer`: the GStreamer RTSP server (``rtsp_server.py`` beside this file) under the
  system python; kill, freeze (SIGSTOP), resume, restart on the same port with another video.
- :class:`BlackHole`: a TCP listener whose connections complete and are never answered.
- :func:`refused_url`: an RTSP URL on a loopback port that refuses connections (held, never listening).
- :func:`rtsp_missing_reason`: why the server cannot run here (None when it can).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from streamer.testing.processes import end_process, refused_port

RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def rtsp_missing_reason() -> str | None:
    """Why the RTSP server cannot run here (None when it can). CI installs it, so there it never skips."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing (the GStreamer RTSP server runs under the system python)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return ("the GStreamer RTSP server is not installed (apt-get install gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi)")
    return None


def refused_url() -> str:
    """An RTSP URL whose port refuses connections (held, never listening: :func:`refused_port`)."""
    return f"rtsp://127.0.0.1:{refused_port()}/nothing"


class RtspServer:
    """One RTSP server process serving ``video`` (looping, real time) at ``rtsp://127.0.0.1:PORT/live``."""

    def __init__(self, video: Path, log_dir: Path, port: int = 0, mount: str = "/live") -> None:
        self.video, self.log_dir, self.port, self.mount = Path(video), Path(log_dir), port, mount
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self, video: Path | None = None, timeout: float = 30.0) -> str:
        """Start (again, on the same port once one was chosen); returns the URL once it listens."""
        if video is not None:
            self.video = Path(video)
        self.starts += 1
        err = open(self.log_dir / f"rtsp-{self.port or 'new'}-{self.starts}.log", "w")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), "--file", str(self.video),
                                      "--host", "127.0.0.1", "--port", str(self.port), "--mount", self.mount],
                                     stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline().strip()
            if line.startswith("READY "):
                break
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"RTSP server did not start; see {err.name}")
        self.url = line.split(" ", 1)[1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        return self.url

    def kill(self) -> None:
        """Lose the source abruptly (SIGKILL): connections drop, nothing is sent any more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the connection stays open and nothing arrives."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, video: Path | None = None) -> str:
        self.kill()
        return self.start(video)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server must run to see SIGTERM
        end_process(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> "RtspServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlackHole:
    """A listener that completes TCP handshakes (kernel backlog) and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    @property
    def rtsp_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/blackhole"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "BlackHole":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
