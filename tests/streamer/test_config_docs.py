"""docs/config.schema.json is what the models generate, and docs/CONFIG.md documents every key in it
(under its section's heading, with the schema's default)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from streamer.config import main, schema_text

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "docs" / "config.schema.json"
CONFIG_MD = REPO / "docs" / "CONFIG.md"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def test_committed_schema_is_the_generated_one(capsys):
    assert SCHEMA_FILE.read_text() == schema_text(), "run: python -m streamer.config --schema > docs/config.schema.json"
    assert main(["--schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_shipped_configs_are_valid_against_the_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()) or {}, schema)
    jsonschema.validate({"sources": ["clip.mp4", {"id": "cam", "url": 0}]}, schema)  # the shorthand forms
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"window": {"hopp": 3}}, schema)


def _resolve(node: dict, schema: dict) -> dict:
    """Follow $ref and pick the object out of ``anyOf`` (``X | null``, ``string | X``)."""
    if "$ref" in node:
        return _resolve(schema["$defs"][node["$ref"].split("/")[-1]], schema)
    for option in node.get("anyOf", []):
        if "$ref" in option or option.get("type") == "object":
            return _resolve(option, schema)
    return node


def documented_keys(schema: dict) -> list[tuple[str, str, dict]]:
    """(heading, key, property schema) for every key: ``sources``, ``sources[].options``, ``events.classes.<label>``."""
    out: list[tuple[str, str, dict]] = []

    def walk(node: dict, heading: str, child: str) -> None:
        node = _resolve(node, schema)
        if node.get("type") == "array":
            return walk(node["items"], heading, heading + "[]")
        if isinstance(node.get("additionalProperties"), dict):
            return walk(node["additionalProperties"], heading + ".<label>", heading + ".<label>")
        for key, prop in node.get("properties", {}).items():
            out.append((heading, key, prop))
            inner = _resolve(prop, schema)
            if "properties" in inner or inner.get("type") == "array" or isinstance(
                    inner.get("additionalProperties"), dict):
                walk(prop, f"{child}.{key}", f"{child}.{key}")

    for section, prop in schema["properties"].items():
        walk(prop, section, section)
    return out


def sections(markdown: str) -> dict[str, str]:
    """The text under each heading ``## `name` `` / ``### `name` ``, by name."""
    parts = re.split(r"^#{2,3} `([^`]+)`.*$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def table(text: str) -> dict[str, list[str]]:
    """The rows of the markdown tables in ``text`` by their first cell (``\\|`` is a pipe inside a cell)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def yaml_word(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def test_config_md_names_every_key_with_its_default(schema):
    text = sections(CONFIG_MD.read_text())
    keys = documented_keys(schema)
    assert len(keys) >= 79  # every section, sources[].options and both event tables
    for heading, key, prop in keys:
        assert heading in text, f"docs/CONFIG.md has no section `{heading}`"
        row = table(text[heading]).get(key)
        assert row is not None and len(row) == 4, f"docs/CONFIG.md, section `{heading}`: no table row for `{key}`"
        if "default" in prop and not isinstance(prop["default"], (dict, list)):
            assert row[2].startswith(f"`{yaml_word(prop['default'])}`"), (heading, key, row[2])
