"""Fixtures for the streamer tests: a tiny random checkpoint saved like a user's, free addresses, the schema."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make_tiny_model(folder: Path, num_frames: int = 8, num_labels: int = 5) -> Path:
    import torch

    from model import TimeSformer, save_pretrained
    from model.config import TimesformerConfig

    torch.manual_seed(0)
    cfg = TimesformerConfig(image_size=32, patch_size=8, num_frames=num_frames, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            labels=tuple(f"action_{i}" for i in range(num_labels)))
    return save_pretrained(TimeSformer(cfg), folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 32x32, patch 8, 2-layer, hidden 32 TimeSformer in Hugging Face layout (loaded through load_model)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-timesformer")


def free_tcp_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def tcp_address() -> str:
    return free_tcp_address()


@pytest.fixture(scope="session")
def protocol_schema() -> dict:
    return json.loads((REPO / "docs" / "protocol.schema.json").read_text())


@pytest.fixture(scope="session")
def validate(protocol_schema):
    import jsonschema

    validator = jsonschema.Draft202012Validator(protocol_schema)

    def check(msg: dict) -> None:
        validator.validate(msg)

    return check


PYTHON = sys.executable
