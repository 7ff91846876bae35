"""Config layers: ${ENV} expansion, relative paths against the config file's folder, the merge over
configs/default.yaml (docs/CONFIG.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import run_stream
from model.errors import ConfigError
from streamer.configfile import load_config, load_yaml
from streamer.configlayers import expand_env, merge

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "configs" / "default.yaml"


def load(argv: list[str]):
    return run_stream.load_app_config(run_stream.build_parser().parse_args(argv))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- ${ENV} ---------------------------------------------------------------------------------------

def test_env_references_in_yaml_values_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.setenv("CAM_PASS", "p4ss")
    cfg = write(tmp_path / "c.yaml", "sources: [{id: door, url: 'rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/live'}]\n"
                                     "model: {device: '${DEVICE_X}'}\n")
    monkeypatch.setenv("DEVICE_X", "cpu")
    app = load(["--config", str(cfg)])
    assert app.sources[0].url == "rtsp://admin:p4ss@10.0.0.5/live"
    assert app.model.device == "cpu"


def test_an_unset_variable_is_one_line_naming_the_key_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_PASSWORD", raising=False)
    cfg = write(tmp_path / "c.yaml", "sources: [a.mp4, {id: b, url: 'rtsp://u:${NO_SUCH_PASSWORD}@h/x'}]\n")
    with pytest.raises(ConfigError) as info:
        load(["--config", str(cfg)])
    assert str(info.value) == ("sources[1].url: environment variable NO_SUCH_PASSWORD is not set; set it, or write "
                               "$${ for a literal ${")


def test_dollar_dollar_brace_is_a_literal_and_a_malformed_reference_is_an_error(monkeypatch):
    monkeypatch.setenv("X", "expanded")
    assert expand_env({"a": ["$${X}", "${X}/$${", "$X and $$ stay"]}) == {"a": ["${X}", "expanded/${", "$X and $$ stay"]}
    monkeypatch.setenv("HOLDS_A_REF", "${X}")
    assert expand_env({"a": "${HOLDS_A_REF}"}) == {"a": "${X}"}  # one pass: a value is not expanded again
    with pytest.raises(ConfigError, match=r"^a\.b\[0\]: '\$\{' must start a reference such as"):
        expand_env({"a": {"b": ["${1X}"]}})
    with pytest.raises(ConfigError, match=r"^a: '\$\{' must start"):
        expand_env({"a": "${X"})


def test_env_references_in_flags_are_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("CAM_PASS", "s3cret")
    app = load(["--source", "door=rtsp://admin:${CAM_PASS}@10.0.0.5/live"])
    assert [(s.id, s.url) for s in app.sources] == [("door", "rtsp://admin:s3cret@10.0.0.5/live")]
    monkeypatch.delenv("PORT_X", raising=False)
    with pytest.raises(ConfigError, match=r"^publisher\.address: environment variable PORT_X is not set"):
        load(["--publish", "tcp://127.0.0.1:${PORT_X}"])


def test_an_expanded_url_never_shows_in_an_error(monkeypatch, capsys):
    monkeypatch.setenv("PUB_PASS", "Kanary9")
    assert run_stream.main(["--publish", "udp://user:${PUB_PASS}@127.0.0.1:5555"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: publisher.address: 'udp://***@127.0.0.1:5555' must be") and "Kanary9" not in line


# --- relative paths -------------------------------------------------------------------------------

def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path):
    folder = tmp_path / "site"
    (folder / "weights").mkdir(parents=True)
    (folder / "org").mkdir()  # a folder next to the config wins over the hub id of the same name
    (folder / "org" / "local").mkdir()
    cfg = write(folder / "c.yaml", """
sources:
  - clip.mp4
  - {id: up, url: ../up.mp4}
  - {id: abs, url: /data/a.mp4}
  - {id: fileurl, url: "file://f.mp4"}
  - {id: cam, url: 0}
  - {id: dev, url: /dev/video0}
  - {id: net, url: "rtsp://h/x"}
  - {id: gen, url: "testpattern://?fps=5"}
model: {source: weights}
publisher: {curve_secret_key: keys/server.key_secret, curve_allow_dir: keys/clients}
annotate: {path: out/annotated.mp4}
""")
    app = load(["--config", str(cfg)])
    assert [s.url for s in app.sources] == [str(folder / "clip.mp4"), str(folder / "../up.mp4"), "/data/a.mp4",
                                           f"file://{folder / 'f.mp4'}", "0", "/dev/video0", "rtsp://h/x",
                                           "testpattern://?fps=5"]
    assert app.model.source == str(folder / "weights")
    assert app.publisher.curve_secret_key == str(folder / "keys/server.key_secret")
    assert app.publisher.curve_allow_dir == str(folder / "keys/clients")
    assert app.annotate.path == str(folder / "out/annotated.mp4")
    for source, expected in [("motion-demo", "motion-demo"), ("facebook/timesformer-base-finetuned-k400",
                                                              "facebook/timesformer-base-finetuned-k400"),
                             ("org/local", str(folder / "org/local")), ("./org/name", str(folder / "org/name")),
                             ("mine.pyth", str(folder / "mine.pyth"))]:
        write(cfg, f"sources: [a.mp4]\nmodel: {{source: {source}}}\n")
        assert load(["--config", str(cfg)]).model.source == expected, source


def test_flags_stay_relative_to_the_working_directory(tmp_path):
    cfg = write(tmp_path / "sub" / "c.yaml", "annotate: {path: a.mp4}\n")
    app = load(["--config", str(cfg), "--source", "clip.mp4", "--annotate", "flag.mp4", "--model", "w/m.pth"])
    assert app.sources[0].url == "clip.mp4" and app.annotate.path == "flag.mp4" and app.model.source == "w/m.pth"


# --- merge over configs/default.yaml --------------------------------------------------------------

def test_a_user_config_merges_over_the_default_key_by_key(tmp_path):
    cfg = write(tmp_path / "mine.yaml", "sources: [{id: mine, url: a.mp4}]\nmodel: {device: cpu}\n"
                                        "events: {default: {enter: 0.7}}\n")
    app = load(["--config", str(cfg)])
    default = load_yaml(DEFAULT)
    assert [s.id for s in app.sources] == ["mine"]  # lists are replaced
    assert app.model.device == "cpu"
    for key, value in default["model"].items():  # the rest of the section comes from the default
        if key != "device":
            assert getattr(app.model, key) == value, key
    for key, value in default["events"]["default"].items():  # mappings merge recursively
        assert getattr(app.events.default, key) == (0.7 if key == "enter" else value), key
    assert app.publisher.address == default["publisher"]["address"]
    assert app.snapshot.address == default["snapshot"]["address"]


def test_flags_win_over_both_and_null_clears_a_default(tmp_path):
    cfg = write(tmp_path / "mine.yaml", "snapshot: {address: null}\nmodel: {precision: fp16}\n")
    app = load(["--config", str(cfg), "--precision", "fp32", "--source", "x.mp4"])
    assert app.snapshot.address is None and app.model.precision == "fp32"
    assert [s.url for s in app.sources] == ["x.mp4"]


def test_a_config_without_sources_keeps_the_defaults(tmp_path):
    cfg = write(tmp_path / "mine.yaml", "model: {top_k: 2}\n")
    app = load(["--config", str(cfg)])
    assert [s.url for s in app.sources] == [s["url"] for s in load_yaml(DEFAULT)["sources"]]


def test_a_layer_that_sets_one_of_two_exclusive_window_keys_drops_the_other():
    base = {"window": {"num_frames": 8, "span_s": 1.28, "hop_s": 0.24, "freshness_s": 1.0}}
    assert merge(base, {"window": {"stride": 2, "hop": 4}}) == {
        "window": {"num_frames": 8, "stride": 2, "hop": 4, "freshness_s": 1.0}}
    assert merge(base, {"window": {"span_s": 2.0}})["window"]["hop_s"] == 0.24
    both = merge(base, {"window": {"stride": 2, "span_s": 3.0}})  # one layer giving both is still an error
    assert both["window"]["stride"] == 2 and both["window"]["span_s"] == 3.0
    assert base["window"]["span_s"] == 1.28  # inputs untouched


def test_library_callers_can_load_without_the_default(tmp_path):
    cfg = write(tmp_path / "c.yaml", "sources: [a.mp4]\n")
    assert load_config(cfg).snapshot.address is None  # no defaults layer: the models' defaults
    assert load_config(cfg, defaults=DEFAULT).snapshot.address == load_yaml(DEFAULT)["snapshot"]["address"]
