"""Absurd config input is refused early with one line, and no error message renders a whole value.

A 411-byte "billion laughs" YAML (aliases nine deep, 9**9 items) once cost 666 MB and 7 s in the
error path. Memory is measured with tracemalloc (peak of Python allocations), never wall time.
"""

from __future__ import annotations

import tracemalloc

import pytest

import run_stream
from model.errors import ConfigError
from streamer.configerrors import VALUE_CHARS, describe
from streamer.configfile import MAX_FILE_BYTES, build_config, load_yaml

LAUGHS = "".join(f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
                 for name, prev in zip("abcdefghi", ['"lol"', "*a", "*b", "*c", "*d", "*e", "*f", "*g", "*h"]))
BOMB = LAUGHS + "sources: [*i]\n"  # 9**9 * 9 "lol"s once expanded
MIB = 1 << 20


def peak_growth(call) -> tuple[int, object]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, result


def billion_laughs_object(levels: int = 9) -> list:
    """The same structure built in Python: 9**levels leaves behind a few dozen shared lists."""
    item: object = "lol"
    for _ in range(levels):
        item = [item] * 9
    return item


def test_the_billion_laughs_file_fails_with_one_line_and_little_memory(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(BOMB)
    assert len(BOMB.encode()) < 512
    growth, code = peak_growth(lambda: run_stream.main(["--config", str(path)]))
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: config file {path}: more than") and "YAML aliases" in line
    assert growth < 4 * MIB, growth


def test_a_bomb_handed_to_build_config_is_refused_before_validation():
    bomb = billion_laughs_object()
    growth, _ = peak_growth(lambda: pytest.raises(ConfigError, build_config, {"sources": bomb}))
    assert growth < 4 * MIB, growth
    with pytest.raises(ConfigError, match=r"^config: more than \d+ values"):
        build_config({"sources": bomb})


def test_an_error_message_renders_a_bounded_part_of_any_value():
    bomb = billion_laughs_object()
    growth, text = peak_growth(lambda: describe(bomb))
    assert growth < MIB, growth
    assert text.startswith("list [[[") and len(text) <= len("list ") + VALUE_CHARS
    # a value small enough to pass the size check is still shown bounded
    with pytest.raises(ConfigError) as info:
        build_config({"sources": [billion_laughs_object(3)]})
    assert str(info.value).startswith("sources[0]: expected a mapping, got list [[[") and len(str(info.value)) < 100


@pytest.mark.parametrize("content, expected", [
    (b"sources: [a.mp4]\n#" + b"x" * MAX_FILE_BYTES, "larger than 1 MiB"),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested"),
    (b"a: " + b"9" * 6000 + b"\n", "a number too long"),
    (b"sources: [\xff\xfe]\n", "not UTF-8"),
])
def test_absurd_files_are_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value).startswith(f"config file {path}") and expected in str(info.value)
    assert "\n" not in str(info.value)
