"""YAML config: types, ranges, unknown keys, precedence, and the CLI's exit status for mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import run_stream
from model.errors import ConfigError
from streamer.config import SnapshotConfig, SourceConfig, SourceOptions, WindowConfig
from streamer.configfile import build_config, load_yaml, merge, source_from_flag

REPO = Path(__file__).resolve().parents[2]


def test_full_schema_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("""
sources:
  - id: cam0
    url: rtsp://user:secret@10.0.0.5/live
    options: {open_timeout_s: 2, stall_timeout_s: 3, backoff_max_s: 10}
  - id: clip
    url: clip.mp4
    mode: file
    options: {loop: true}
window: {num_frames: 8, span_s: 8.5, hop_s: 1.0, freshness_s: 1.5}
batching: {max_batch: 8, max_wait_ms: 3}
model: {source: motion-demo, precision: int8, device: cuda:0, int8_threshold: 0}
publisher: {address: "ipc:///tmp/x", sndhwm: 50, heartbeat_s: 0.5}
logging: {level: DEBUG, status_line: "off"}
run: {max_windows: 5}
""")
    with pytest.raises(ConfigError, match=r"^model\.int8_threshold: must be > 0"):
        build_config(load_yaml(path))
    cfg = build_config(merge(load_yaml(path), {"model": {"int8_threshold": 6}}))
    assert cfg.sources[0].options.open_timeout_s == 2.0 and cfg.sources[1].options.loop
    assert cfg.sources[1].mode == "file"
    assert cfg.window.span_s == 8.5 and cfg.window.hop_s == 1.0 and cfg.window.by_time
    assert cfg.batching.max_batch == 8 and cfg.publisher.sndhwm == 50 and cfg.run.max_windows == 5
    assert cfg.model.device == "cuda:0" and cfg.logging.status_line == "off"


@pytest.mark.parametrize("yaml_text, message", [
    ("sources: [a.mp4]\nwindow: {hopp: 3}\n", r"^window\.hopp: unknown key; known keys here: freshness_s, hop,"),
    ("sources: [a.mp4]\nwindow: {hop: 0}\n", r"^window\.hop: must be > 0, got 0$"),
    ("sources: [a.mp4]\nwindow: {hop: 2.5}\n", r"^window\.hop: expected an integer, got float 2\.5$"),
    ("sources: [a.mp4]\nwindow: {stride: 2, span_s: 1}\n", r"^window\.stride: give stride .* not both$"),
    ("sources: [a.mp4]\nmodel: {precision: int4}\n", r"^model\.precision: 'int4' is not one of auto, int8"),
    ("sources: [{id: a, url: x.mp4, options: {loop: yes please}}]\n",
     r"^sources\[0\]\.options\.loop: expected true or false"),
    ("sources: [{id: 'a b', url: x.mp4}]\n", r"^sources\[0\]\.id: 'a b' must be"),
    ("sources: [{url: x.mp4}]\n", r"^sources\[0\]\.id: missing"),
    ("sources: []\n", r"^sources: at least one source"),
    ("sources: [a.mp4, {id: s0, url: b.mp4}]\n", r"^sources: duplicate id 's0'"),
    ("sources: [a.mp4]\npublisher: {address: 'udp://x'}\n", r"^publisher\.address: 'udp://x' must be"),
    ("window: {}\n", r"^sources: missing; list at least one source or pass --source URL$"),
    ("- just\n- a list\n", r"top level must be a mapping"),
    ("window: [unclosed\n", r"line \d+"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as info:
        build_config(load_yaml(path))
    assert "\n" not in str(info.value)


def test_yaml_is_safe_loaded(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("sources: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        load_yaml(path)


def test_precedence_defaults_yaml_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{id: a, url: a.mp4}]\nmodel: {precision: fp16, top_k: 3}\n"
                    "publisher: {address: 'tcp://127.0.0.1:6000'}\n")
    args = run_stream.build_parser().parse_args(["--config", str(path), "--precision", "fp32",
                                                 "--source", "cam=rtsp://h/x", "--source", "b.mp4"])
    cfg = run_stream.load_app_config(args)
    assert cfg.model.precision == "fp32"  # flag beats YAML
    assert cfg.model.top_k == 3  # YAML beats default
    assert cfg.model.device == "auto"  # default
    assert cfg.publisher.address == "tcp://127.0.0.1:6000"
    assert [(s.id, s.url) for s in cfg.sources] == [("cam", "rtsp://h/x"), ("s1", "b.mp4")]


def test_source_flag_forms():
    assert source_from_flag("0", 0) == {"id": "s0", "url": "0"}
    assert source_from_flag("door=rtsp://u:p@h/x?a=b", 1) == {"id": "door", "url": "rtsp://u:p@h/x?a=b"}
    assert source_from_flag("rtsp://h/x?a=b", 2) == {"id": "s2", "url": "rtsp://h/x?a=b"}


def test_dataclass_ranges():
    with pytest.raises(ConfigError, match="backoff_max_s"):
        SourceOptions(backoff_initial_s=5, backoff_max_s=1)
    with pytest.raises(ConfigError, match="hop: give hop"):
        WindowConfig(hop=2, hop_s=1.0)


@pytest.mark.parametrize("argv", [["--config", "/nonexistent/c.yaml"], ["--source", "x.mp4", "--max-windows", "0"],
                                  ["--source", "ftp://h/x.mp4"]])
def test_cli_config_errors_exit_2_with_one_line(argv, capsys):
    assert run_stream.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_cli_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        run_stream.main(["--mode", "sideways"])
    assert info.value.code == 2


def test_shipped_configs_load(tmp_path):
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        data = load_yaml(path)
        data.setdefault("sources", ["a.mp4"])
        build_config(data)


def test_views_from_yaml_and_flag(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{id: a, url: a.mp4}]\nmodel: {views: single}\n")
    parser = run_stream.build_parser()
    assert run_stream.load_app_config(parser.parse_args(["--config", str(path)])).model.views == "single"
    flagged = parser.parse_args(["--config", str(path), "--views", "symmetric"])
    assert run_stream.load_app_config(flagged).model.views == "symmetric"
    path.write_text("sources: [{id: a, url: a.mp4}]\nmodel: {views: mirrored}\n")
    with pytest.raises(ConfigError, match="views"):
        run_stream.load_app_config(parser.parse_args(["--config", str(path)]))


@pytest.mark.parametrize("data, line", [
    ({"window": {"hop_sec": 1}},
     "window.hop_sec: unknown key; known keys here: freshness_s, hop, hop_s, num_frames, span_s, stride; "
     "did you mean hop_s?"),
    ({"window": {"zzz": 1}}, "window.zzz: unknown key; known keys here: freshness_s, hop, hop_s, num_frames, span_s, "
                             "stride"),
    ({"modle": {}}, "modle: unknown key; known keys here: alerts, annotate, batching, clips, cluster, control, "
                    "events, logging, metrics, model, publisher, run, snapshot, sources, ui, window; "
                    "did you mean model?"),
    ({"window": {"hop": -1}}, "window.hop: must be > 0, got -1"),
    ({"sources": ["a.mp4", {"id": "b", "url": "b.mp4", "options": {"max_fps": -1}}]},
     "sources[1].options.max_fps: must be > 0, got -1"),
    ({"sources": [{"id": "a", "url": "a.mp4", "options": {"max_fps": "5"}}]},
     "sources[0].options.max_fps: expected a number, got str '5'"),
    ({"sources": [{"id": "a", "url": "a.mp4", "options": {"ring_capacity": True}}]},
     "sources[0].options.ring_capacity: expected an integer, got bool True"),
    ({"sources": [{"id": "a", "url": "a.mp4", "options": {"fps_hint": float("inf")}}]},
     "sources[0].options.fps_hint: must be a finite number, got inf"),
    ({"sources": [{"idd": "a", "url": "a.mp4"}]},
     "sources[0].idd: unknown key; known keys here: id, mode, options, url; did you mean id?"),
    ({"sources": [None]}, "sources[0]: expected a mapping, got NoneType None"),
    ({"metrics": {"port": 70000}}, "metrics.port: must be <= 65535, got 70000"),
    ({"events": {"classes": {"grow": {"k": 5}}}}, "events.classes.grow.k: need 1 <= k <= n, got k=5, n=3"),
    ({"events": {"classes": {"grow": {"enterr": 0.5}}}},
     "events.classes.grow.enterr: unknown key; known keys here: alpha, cooldown_s, enabled, enter, exit, k, "
     "min_duration_s, n, smoothing; did you mean enter?"),
    ({"snapshot": {"address": "udp://h:1"}},
     "snapshot.address: 'udp://h:1' must be tcp://HOST:PORT, ipc://PATH or inproc://NAME"),
    ({"annotate": {"path": "out.gif"}}, "annotate.path: 'out.gif' must end in .mp4, .avi, .mkv"),
    ({"window": {"self": 1}}, "window.self: unknown key; known keys here: freshness_s, hop, hop_s, num_frames, "
                              "span_s, stride"),
    ({"window": {"a\nb": 1}}, "window.'a\\nb': unknown key; known keys here: freshness_s, hop, hop_s, num_frames, "
                              "span_s, stride"),
])
def test_validation_errors_are_todays_one_line_text(data, line):
    with pytest.raises(ConfigError) as info:
        build_config({"sources": ["a.mp4"], **data})
    assert str(info.value) == line


def test_a_camera_index_written_as_a_number_is_a_string_url():
    cfg = build_config({"sources": [{"id": "cam", "url": 0}]})
    assert cfg.sources[0].url == "0"
    with pytest.raises(ConfigError, match=r"^sources\[0\]\.url: expected a string, got bool True$"):
        build_config({"sources": [{"id": "cam", "url": True}]})


def test_a_wrong_value_is_shown_short_and_without_credentials():
    with pytest.raises(ConfigError) as info:
        build_config({"sources": "rtsp://admin:S3cr3t-PW@10.0.0.5/" + "x" * 500})
    message = str(info.value)
    assert message.startswith("sources: expected a list, got str 'rtsp://***@10.0")
    assert "S3cr3t" not in message and len(message) < 100


def test_sections_constructed_in_code_raise_config_error_too():
    with pytest.raises(ConfigError, match=r"^address: 'udp://x' must be"):
        SnapshotConfig(address="udp://x")
    with pytest.raises(ConfigError, match=r"^options\.max_fps: must be > 0, got 0$"):
        SourceConfig(id="a", url="a.mp4", options={"max_fps": 0})


def test_configs_are_frozen_and_copied_with_model_copy():
    cfg = build_config({"sources": ["a.mp4"], "window": {"hop": 2}})
    with pytest.raises(ValidationError):
        cfg.window.hop = 3
    assert cfg.window.model_copy(update={"hop": 3}).hop == 3 and cfg.window.hop == 2


def test_window_tells_which_sampling_keys_a_config_set():
    assert build_config({"sources": ["a.mp4"]}).window.sampling_overrides() == {}
    window = build_config({"sources": ["a.mp4"], "window": {"span_s": 1.5, "num_frames": None, "hop_s": 0.5}}).window
    assert window.sampling_overrides() == {"span_s": 1.5}  # hop is not sampling; null means "from the model"
    assert {"span_s", "num_frames", "hop_s"} <= window.model_fields_set
