"""Control requests: parsed and validated exactly as the YAML is, every failure one line, never a raise."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from model.errors import ConfigError
from streamer.configfile import build_config
from streamer.control import api, requests
from streamer.control.entries import parse_source, source_to_dict


@pytest.fixture
def reply(control_schema):
    """Send one request (a dict or raw bytes) to a service; the reply, checked against the JSON Schema."""

    def send(service, request) -> dict:
        raw = request if isinstance(request, bytes) else json.dumps(request).encode()
        got = json.loads(requests.handle(service, raw))
        control_schema("reply", got)
        assert got.pop("type") == "reply" and isinstance(got.pop("published_ts"), float)
        return got

    return send


@pytest.mark.parametrize("entry", [
    {"id": "a", "url": ""},
    {"id": "a b", "url": "0"},
    {"id": "a", "url": "0", "colour": "red"},
    {"id": "a", "url": "0", "mode": "fast"},
    {"id": "a", "url": "0", "options": {"max_fps": -1}},
    {"id": "a", "url": "0", "options": {"open_timeout_s": "soon"}},
    {"id": "a", "url": "0", "options": {"loop": 1}},
    {"id": "a", "url": "0", "options": {"backoff_initial_s": 5, "backoff_max_s": 1}},
    {"id": "a", "url": "0", "options": {"ring_capacity": 2.5}},
    {"url": "0"},
])
def test_a_bad_source_gets_the_yaml_error(service, entry, reply):
    with pytest.raises(ConfigError) as yaml_error:
        build_config({"sources": [entry]})
    expected = str(yaml_error.value)
    assert expected.startswith("sources[0]")
    got = reply(service, {"op": "add", "source": entry})
    assert got["ok"] is False and got["op"] == "add"
    assert got["error"] == "source" + expected[len("sources[0]"):]
    assert "\n" not in got["error"] and service.sources == {}


def test_a_source_round_trips_through_its_entry():
    entry = {"id": "door", "url": "rtsp://u:p@10.0.0.5/live", "mode": "live",
             "options": {"open_timeout_s": 2.0, "loop": True, "ring_capacity": 32}}
    source = parse_source(entry)
    assert source_to_dict(source) == entry
    assert parse_source(source_to_dict(source)) == source
    assert parse_source({"id": "cam", "url": 0}).url == "0"  # a camera index as a number, as the YAML allows


@pytest.mark.parametrize("request_, error", [
    ({"op": "frobnicate"}, "op: 'frobnicate' is not one of add, remove, update, list, reload, health"),
    ({"id": "a"}, "op: missing is not one of add, remove, update, list, reload, health"),
    ({"op": "list", "verbose": True}, "verbose: unknown key for op 'list'; known keys here: op, version"),
    ({"op": "remove"}, "id: missing; op 'remove' needs the stream id"),
    ({"op": "remove", "id": 3}, "id: expected the id of a running stream (a string), got 3"),
    ({"op": "add"}, "source: missing; op 'add' needs the source entry"),
    ({"op": "add", "source": "rtsp://x"}, "source: expected a mapping, got str"),
    ({"op": "list", "version": 2}, "version: 2 is not supported; this service speaks version 1"),
])
def test_malformed_requests_get_one_line(service, request_, error, reply):
    got = reply(service, request_)
    assert got["ok"] is False and got["error"].startswith(error), got
    assert service.calls == []


@pytest.mark.parametrize("raw, error", [
    (b"\xff\xfe", "request: not UTF-8 text"),
    (b"{\"op\": ", "request: not valid JSON"),
    (b"[\"list\"]", "request: expected a JSON object"),
    (b"{\"op\": \"list\", \"op\": \"reload\"}", "request: key 'op' given twice"),
    (b"{\"op\": \"add\", \"source\": {\"id\": \"a\", \"url\": \"0\", \"options\": {\"max_fps\": NaN}}}",
     "request: NaN is not a number JSON allows"),
    (b"[" * 100_000 + b"]" * 100_000, "request: nested too deeply"),
])
def test_undecodable_requests_get_one_line(service, raw, error, reply):
    got = reply(service, raw)
    assert got == {"ok": False, "op": None, "version": 1, "error": got["error"]}
    assert got["error"].startswith(error), got


def test_operations_reach_the_service_once_each(service, reply):
    source = {"id": "door", "url": "rtsp://user:secret@10.0.0.5/live"}
    added = reply(service, {"op": "add", "source": source, "version": 1})
    assert added == {"ok": True, "op": "add", "version": 1, "id": "door", "session": "00000001", "state": "connecting"}
    listed = reply(service, {"op": "list"})
    assert [s["id"] for s in listed["sources"]] == ["door"]
    assert "secret" not in json.dumps(listed)  # S6: urls are redacted
    refused = reply(service, {"op": "add", "source": source})
    assert refused["error"] == "id 'door' is already running; use update to change it"
    assert reply(service, {"op": "update", "source": {**source, "url": "1"}})["session"] == "00000002"
    assert reply(service, {"op": "remove", "id": "door"}) == {"ok": True, "op": "remove", "version": 1, "id": "door"}
    assert reply(service, {"op": "remove", "id": "door"})["error"] == "no stream 'door'; running: none"
    assert service.calls == ["add", "list", "add", "update", "remove", "remove"]


def test_errors_never_show_credentials(service, reply):
    got = reply(service, {"op": "add", "source": {"id": "x y", "url": "rtsp://admin:hunter2@cam/live"}})
    assert got["ok"] is False and "hunter2" not in json.dumps(got)
    got = reply(service, {"op": "add", "source": {"id": "cam", "url": "rtsp://admin:hunter2@cam/live", "x": 1}})
    assert got["ok"] is False and "hunter2" not in json.dumps(got)


def test_a_defect_in_the_service_is_an_error_reply(service, monkeypatch, caplog, reply):
    def broken() -> dict:
        raise KeyError("boom")

    monkeypatch.setattr(service, "list", broken)
    got = reply(service, {"op": "list"})
    assert got == {"ok": False, "op": "list", "version": 1,
                   "error": "internal error in list: KeyError; see the service log"}
    assert any("control: list failed" in r.getMessage() for r in caplog.records)


def test_a_reply_json_cannot_carry_is_an_error_reply(service, monkeypatch, reply):
    monkeypatch.setattr(service, "health", lambda: {"healthy": float("nan")})
    got = reply(service, {"op": "health"})
    assert got["ok"] is False and got["error"].startswith("internal error: the reply could not be encoded")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                              lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                              max_leaves=20).map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["op", "id", "source", "version", "x"]),
                                 st.sampled_from(["add", "remove", "list", 1, None, {}, {"id": "a"}, {"url": "0"}]),
                                 max_size=4).map(lambda v: json.dumps(v).encode())))
def test_any_bytes_get_a_one_line_reply(fake_service_class, control_schema, raw):
    got = json.loads(requests.handle(fake_service_class(), raw))
    control_schema("reply", got)
    assert isinstance(got["ok"], bool)
    if not got["ok"]:
        assert isinstance(got["error"], str) and got["error"] and "\n" not in got["error"]


@pytest.mark.parametrize("request_", [
    {"op": "list"}, {"op": "list", "version": 1}, {"op": "health"}, {"op": "reload"},
    {"op": "remove", "id": "door"}, {"op": "add", "source": {"id": "door", "url": "0"}},
    {"op": "update", "source": {"id": "door", "url": 0, "mode": "file", "options": {"loop": True}}},
    {"op": "list", "id": "door"}, {"op": "remove"}, {"op": "add"}, {"op": "add", "source": {"id": "door"}},
    {"op": "add", "source": {"id": "door", "url": "0", "extra": 1}}, {"op": "remove", "id": "door", "source": {}},
    {"op": "stop"}, {"op": "list", "version": 2}, {"id": "door"},
])
def test_the_schema_and_the_parser_agree_on_the_shape_of_requests(control_schema, request_):
    import jsonschema

    try:
        requests.parse_request(request_)
        parsed = True
    except ConfigError:
        parsed = False
    try:
        control_schema("request", request_)
        valid = True
    except jsonschema.ValidationError:
        valid = False
    assert parsed == valid


def test_diff_by_id():
    a, b, c = (parse_source({"id": i, "url": "0"}) for i in "abc")
    b2 = parse_source({"id": "b", "url": "1"})
    added, removed, changed, unchanged = api.diff_sources([a, b], [b2, c, a])
    assert (added, removed, changed, unchanged) == ([c], [], [b2], ["a"])
    assert api.diff_reply(added, ["z"], changed, unchanged) == {"added": ["c"], "removed": ["z"], "updated": ["b"],
                                                                "unchanged": 1}


def test_health_names_each_stream_that_is_not_running_or_ended():
    def entry(i, state, reason=""):
        return {"id": i, "state": state, "reason": reason}

    assert api.assess([entry("a", "running"), entry("b", "ended")]) == {"healthy": True, "streams": 2, "problems": []}
    assert api.assess([]) == {"healthy": True, "streams": 0, "problems": []}
    got = api.assess([entry("a", "running"), entry("b", "backoff", "retry in 2.0 s"), entry("c", "stalled")])
    assert got == {"healthy": False, "streams": 3, "problems": ["b: backoff (retry in 2.0 s)", "c: stalled"]}
