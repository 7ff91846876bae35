"""Fixtures for the fault tests: the project's feed helpers (tests/fixtures/feeds.py), a tiny model, RTSP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

import feeds  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return feeds.make_tiny_model(tmp_path_factory.mktemp("faults-model") / "tiny-timesformer")


@pytest.fixture(scope="session")
def rtsp_ready() -> None:
    """Skip (with the reason) only when the GStreamer RTSP server is not installed; fail in CI."""
    reason = feeds.rtsp_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):  # .ci/run installs the server: there a missing one is a failure
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)


@pytest.fixture
def rtsp_server(rtsp_ready, bikes_mp4, tmp_path):
    with feeds.RtspServer(bikes_mp4, tmp_path) as server:
        server.start()
        yield server
