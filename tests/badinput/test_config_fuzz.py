"""Hypothesis over config documents: whatever the YAML says, loading it gives a valid AppConfig or a
one-line ConfigError that starts with the key path. Never a traceback, never a silently accepted
nonsense value (R21)."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from model.errors import ConfigError
from streamer.config import AppConfig
from streamer.configfile import build_config, read_layer
from streamer.sources.table import plan_source

pytestmark = pytest.mark.timeout(120)

SECTIONS = {
    "window": ["num_frames", "stride", "span_s", "hop", "hop_s", "freshness_s"],
    "batching": ["max_batch", "max_wait_ms"],
    "model": ["source", "precision", "device", "int8_threshold", "top_k", "threads"],
    "publisher": ["address", "sndhwm", "linger_ms", "heartbeat_s", "queue_size", "wait_subscribers"],
    "logging": ["level", "status_line", "status_interval_s"],
    "run": ["max_windows", "duration_s", "max_sources"],
}
OPTIONS = ["open_timeout_s", "read_timeout_s", "stall_timeout_s", "backoff_initial_s", "backoff_max_s", "loop",
           "ring_capacity", "max_pixels", "max_fps", "fps_hint", "max_gap_intervals"]
TYPOS = ["hopp", "strid", "max_bach", "sndhwn", "", "Window", "sources ", "__class__", "!!python", "self"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["auto", "int8", "cpu", "cuda:0", "live", "file", "off", "DEBUG", "tcp://127.0.0.1:5555",
                     "ipc:///tmp/x", "udp://h", "rtsp://u.ser:p@ss@127.0.0.1/x", "0", "clip.mp4",
                     "testpattern://?fps=25", "ftp://h/x", ""]),
    st.text(max_size=12), st.sampled_from(["${HOME}/x.mp4", "$${literal}", "${", "${NO_SUCH_VAR_X}"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


CHOICES = {"precision": ["auto", "int8", "fp16", "bf16", "fp32", "int4"], "device": ["auto", "cpu", "cuda:0", "gpu"],
           "level": ["DEBUG", "INFO", "WARNING", "ERROR", "info"], "status_line": ["auto", "on", "off"],
           "source": ["motion-demo", "org/name", "/no/such/dir"], "mode": ["live", "file", "batch"],
           "address": ["tcp://127.0.0.1:5555", "ipc:///tmp/x", "tcp://0.0.0.0:5555", "udp://h:1"]}
INTS = {"num_frames", "stride", "hop", "max_batch", "top_k", "threads", "sndhwm", "linger_ms", "queue_size",
        "wait_subscribers", "max_windows", "ring_capacity", "max_pixels", "max_sources"}


def plausible(key: str) -> st.SearchStrategy:
    """Mostly values of the right type and near the valid range, so many documents are accepted."""
    if key in CHOICES:
        return st.sampled_from(CHOICES[key])
    if key in INTS:
        return st.integers(-1, 64)
    if key == "loop":
        return st.booleans()
    return st.one_of(st.floats(-1, 100, allow_nan=False), st.integers(0, 30))


def field(key: str) -> st.SearchStrategy:
    return st.integers(0, 9).flatmap(lambda k: values if k == 0 else plausible(key))  # 1 in 10 anything


def section(keys: list[str]) -> st.SearchStrategy:
    known = st.fixed_dictionaries({}, optional={k: field(k) for k in keys})
    typo = st.dictionaries(st.sampled_from(TYPOS), values, max_size=1)
    return st.integers(0, 9).flatmap(lambda k: st.builds(lambda a, b: {**a, **b}, known, typo) if k == 0 else known)


def sometimes(strategy: st.SearchStrategy, wild: st.SearchStrategy = values) -> st.SearchStrategy:
    return st.integers(0, 9).flatmap(lambda k: wild if k == 0 else strategy)


source = sometimes(st.one_of(
    st.sampled_from(["clip.mp4", "rtsp://cam.local/live", "0", "testpattern://", "bogus://x"]),
    st.fixed_dictionaries({"id": sometimes(st.sampled_from(["cam0", "a-b_c", "", "a b", "x.y"])),
                           "url": sometimes(st.sampled_from(["rtsp://first.last:Kanary9@127.0.0.1/live", "a.mp4",
                                                             "rtsp://first.last:${FUZZ_CAM_PASSWORD}@127.0.0.1/x",
                                                             "synthetic://actions", "gopher://x"]))},
                          optional={"mode": field("mode"), "options": section(OPTIONS)}),
))
documents = st.builds(
    lambda known, extra: {**known, **extra},
    st.fixed_dictionaries({"sources": sometimes(st.lists(source, min_size=1, max_size=3))},
                          optional={name: sometimes(section(keys)) for name, keys in SECTIONS.items()}),
    sometimes(st.just({}), st.dictionaries(st.sampled_from(["extras", "modle", "Sources"]), values, max_size=1)))

KEY_PATH = re.compile(r"^(config|[A-Za-z_]\w*(\[\d+\])*(\.[\w ]*(\[\d+\])*)*|sources\[[^\]]+\]\.\w+)[:.]")


def numbers(obj) -> list[float]:
    if isinstance(obj, BaseModel):
        return [x for name in type(obj).model_fields for x in numbers(getattr(obj, name))]
    if isinstance(obj, dict):
        return [x for item in obj.values() for x in numbers(item)]
    if isinstance(obj, tuple):
        return [x for item in obj for x in numbers(item)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def password_in_the_environment():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FUZZ_CAM_PASSWORD", "Kanary9")  # expanded into URLs: never echoed either
        yield


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents)
@example(doc={"sources": None, "extras": [["${NO_SUCH_VAR_X}"]]})  # an env error inside nested lists
def test_any_config_document_loads_or_fails_with_one_line(doc, fuzz_dir):
    path = fuzz_dir / "c.yaml"  # one file, rewritten per example
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        cfg = build_config(read_layer(path))  # as run_stream reads it: ${ENV} expanded, paths resolved
        plans = [plan_source(s) for s in cfg.sources]
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        assert KEY_PATH.match(message) or message.startswith(("config file", "source url")), message
        assert "Kanary9" not in message and "p@ss" not in message  # credentials never echoed
        return
    assert isinstance(cfg, AppConfig) and len(plans) == len(cfg.sources) >= 1
    found = numbers(cfg)
    assert len(found) >= 30 and all(math.isfinite(x) for x in found), cfg
    assert len({s.id for s in cfg.sources}) == len(cfg.sources)
