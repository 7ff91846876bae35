"""The state file: written atomically (old or new after ``kill -9``, never torn), read back validated (R24)."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

import feeds
from model.errors import ConfigError
from streamer.control import state_file
from streamer.control.entries import parse_source

pytestmark = pytest.mark.timeout(180)


def generation(n: int) -> list:
    """The n-th set the writer below writes: 1-6 sources whose urls and options carry n."""
    return [parse_source({"id": f"s{i}", "url": f"synthetic://actions?seed={n}",
                          "options": {"ring_capacity": 8 + n % 5}}) for i in range(1 + n % 6)]


WRITER = f"""
import sys
sys.path[:0] = [{str(feeds.REPO)!r}, {str(feeds.REPO / "tests" / "fixtures")!r}]
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_state_file import generation
from streamer.control import state_file

path, n = sys.argv[1], int(sys.argv[2])
while True:
    state_file.write(path, generation(n))
    sys.stdout.write(f"{{n}}\\n")  # acknowledged: write() returned
    sys.stdout.flush()
    n += 1
"""


def test_round_trip_and_mode(tmp_path):
    path = tmp_path / "state.json"
    assert state_file.read(path) is None
    sources = generation(4)
    state_file.write(path, sources)
    assert state_file.read(path) == tuple(sources)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # urls may carry credentials
    state_file.write(path, [])
    assert state_file.read(path) == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary file left behind


def test_a_torn_temporary_file_is_ignored_and_replaced(tmp_path):
    path = tmp_path / "state.json"
    state_file.write(path, generation(1))
    (tmp_path / ".state.json.tmp").write_bytes(b'{"version": 1, "sources": [{"id": "s0", "ur')  # killed mid-write
    assert state_file.read(path) == tuple(generation(1))
    state_file.write(path, generation(2))
    assert state_file.read(path) == tuple(generation(2))


@pytest.mark.parametrize("content, error", [
    (b"{not json", "is not valid JSON"),
    (b"[]", 'expected {"version": 1, "sources": [...]}'),
    (b'{"version": 2, "sources": []}', 'expected {"version": 1'),
    (b'{"version": 1, "sources": [{"id": "a", "url": "0", "optionz": {}}]}', "sources[0].optionz: unknown key"),
    (b'{"version": 1, "sources": [{"id": "a", "url": "0"}, {"id": "a", "url": "1"}]}', "duplicate id 'a'"),
    (b"\xff" * 10, "is not valid JSON"),
])
def test_an_unusable_state_file_is_one_line_naming_it(tmp_path, content, error):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        state_file.read(path)
    message = str(exc.value)
    assert message.startswith(f"state file {path}") and error in message and "\n" not in message


def test_an_oversize_state_file_is_refused_unread(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b" " * (state_file.MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        state_file.read(path)


def test_kill_9_at_random_moments_leaves_the_old_or_the_new_set(tmp_path):
    path = tmp_path / "state.json"
    rng = random.Random(21)
    n = 0
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], stdout=subprocess.PIPE,
                                text=True, env=feeds.ENV)
        try:
            first = proc.stdout.readline()  # the loop runs: its first write was acknowledged
            assert first.strip() == str(n), "the writer did not start"
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            acked = [int(line) for line in [first, *proc.stdout.read().splitlines()] if line.strip()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
        restored = state_file.read(path)
        seed = int(restored[0].url.rsplit("=", 1)[1])
        assert restored == tuple(generation(seed))  # a whole set, never a mix
        assert seed in (acked[-1], acked[-1] + 1), (seed, acked[-1])  # the last acknowledged one, or the next
        n = seed + 1
    assert json.loads(path.read_text())["version"] == 1
