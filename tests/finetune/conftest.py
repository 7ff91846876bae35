"""Fixtures of the fine-tuning tests: a small labeled folder dataset, a cache folder per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clipsets import write_folder


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """3 classes, 6 training and 2 validation videos each, with a reversal map."""
    root = write_folder(tmp_path_factory.mktemp("small"), ("grow", "shrink", "still"), 6, 2)
    (root / "symmetries.json").write_text(json.dumps({"reverse": {"grow": "shrink", "shrink": "grow"}}))
    return root


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"
