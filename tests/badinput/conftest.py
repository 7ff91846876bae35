"""Fixtures for the bad-input tests: the project's feed helpers and a tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

import feeds  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return feeds.make_tiny_model(tmp_path_factory.mktemp("badinput-model") / "tiny-timesformer")
