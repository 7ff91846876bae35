"""Fixtures for the fault tests (the shared ones, tiny_model and rtsp_ready among them, are in tests/conftest.py)."""

from __future__ import annotations

import feeds
import pytest


@pytest.fixture
def rtsp_server(rtsp_ready, bikes_mp4, tmp_path):
    with feeds.RtspServer(bikes_mp4, tmp_path) as server:
        server.start()
        yield server
