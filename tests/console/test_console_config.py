"""The console's config sections through the CLI: defaults, --ui / --clips, the token rule (S10), one-line errors."""

from __future__ import annotations

import pytest

import run_stream
from model.errors import ConfigError
from streamer.configfile import build_config


def cli(*argv: str):
    return run_stream.load_app_config(run_stream.build_parser().parse_args(list(argv)))


def test_defaults_console_on_loopback_and_clips_on():
    cfg = cli()
    assert cfg.ui.enabled and cfg.ui.address == "127.0.0.1:8080" and cfg.ui.loopback and cfg.ui.token is None
    assert cfg.clips.enabled and cfg.clips.dir == "clips" and (cfg.clips.pre_s, cfg.clips.post_s) == (3.0, 2.0)
    assert (cfg.clips.max_total_mb, cfg.clips.max_age_h) == (2000.0, 72.0)
    assert cfg.alerts == ()


def test_flags_move_or_turn_off_the_console_and_clips(tmp_path):
    cfg = cli("--ui", "127.0.0.1:9000", "--clips", str(tmp_path))
    assert cfg.ui.enabled and cfg.ui.port == 9000 and cfg.clips.dir == str(tmp_path)
    cfg = cli("--ui", "off", "--clips", "off")
    assert not cfg.ui.enabled and not cfg.clips.enabled


def test_off_loopback_without_token_refuses_start_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("TIMESFORMER_UI_TOKEN", raising=False)
    assert run_stream.main(["--ui", "0.0.0.0:8080", "--source", "testpattern://"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ui.token:") and "0.0.0.0:8080" in err


def test_token_from_environment_allows_other_addresses_and_is_never_shown(monkeypatch):
    monkeypatch.setenv("TIMESFORMER_UI_TOKEN", "token-from-env-123")
    cfg = cli("--ui", "0.0.0.0:8080")
    assert cfg.ui.token.get_secret_value() == "token-from-env-123" and not cfg.ui.loopback
    assert "token-from-env-123" not in repr(cfg) + str(cfg)


@pytest.mark.parametrize("section, value, message", [
    ("ui", {"adress": "127.0.0.1:1"}, "ui.adress: unknown key"),
    ("ui", {"address": "8080"}, "ui.address: '8080' must be HOST:PORT"),
    ("ui", {"preview_fps": 30}, "ui.preview_fps:"),
    ("ui", {"token": "short"}, "ui.token: use at least 8 characters"),
    ("clips", {"pre_s": -1}, "clips.pre_s:"),
    ("clips", {"dir": " "}, "clips.dir: must not be empty"),
    ("alerts", [{"kind": "sms"}], "alerts[0].kind: must be one of webhook, mqtt"),
    ("alerts", [{"kind": "webhook", "url": "ftp://x"}], "alerts[0].url: must start with http:// or https://"),
    ("alerts", [{"kind": "webhook"}], "alerts[0].url: missing"),
    ("alerts", [{"kind": "mqtt", "host": "h", "topic_prefix": "a/#"}], "alerts[0].topic_prefix:"),
    ("alerts", [{"kind": "mqtt", "host": "h", "phases": ["begin"]}], "alerts[0].phases[0]:"),
])
def test_bad_values_are_one_line_errors_naming_the_key(section, value, message):
    with pytest.raises(ConfigError) as info:
        build_config({"sources": ["testpattern://"], section: value})
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text, text
