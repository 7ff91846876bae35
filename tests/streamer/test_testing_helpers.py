"""The helpers in streamer.testing that the tests and benchmarks build their runs from."""

from __future__ import annotations

from streamer.configfile import load_config
from streamer.testing.processes import write_config


def test_write_config_gives_each_source_its_own_mode_and_options_over_the_shared_ones(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", [
        {"id": "cam", "url": "rtsp://u:p'w@127.0.0.1:1/x?token=t"},
        {"id": "clip", "url": str(tmp_path / "c.mp4"), "mode": "live", "options": "loop: true"},
    ], options="read_timeout_s: 2, stall_timeout_s: 3")
    sources = {s.id: s for s in load_config(cfg).sources}
    assert sources["cam"].url == "rtsp://u:p'w@127.0.0.1:1/x?token=t"  # quoted whole, a ' included
    assert sources["cam"].mode is None and not sources["cam"].options.loop
    assert sources["clip"].mode == "live" and sources["clip"].options.loop
    assert all(s.options.read_timeout_s == 2 and s.options.stall_timeout_s == 3 for s in sources.values())
