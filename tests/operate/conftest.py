"""Fixtures for the operator-feature tests: the shared feed helpers, a tiny model, the protocol schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

import feeds  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return feeds.make_tiny_model(tmp_path_factory.mktemp("operate-model") / "tiny-timesformer")


@pytest.fixture(scope="session")
def validate():
    import jsonschema

    schema = json.loads((REPO / "docs" / "protocol.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return validator.validate
