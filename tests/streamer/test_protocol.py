"""The wire protocol against its JSON Schema, checked by two validators: Python's jsonschema and ajv
(Node.js, strict mode), the validator an outside client used. One pipeline run produces every message
type: results, status in every state a run reaches, events start/update/end, snapshot answers and
the snapshot socket's error reply; the states a short run cannot reach come from the same builders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import feeds
import pytest
import zmq

from streamer.core.stats import STATES, StreamStats
from streamer.outputs import protocol
from streamer.outputs.snapshot import MAX_REQUEST_FRAMES, request_snapshot
from model.demo.render import Scene, write_video
from streamer.subscribe import Collector

SCHEMA = feeds.REPO / "docs" / "protocol.schema.json"
AJV_SCRIPT = feeds.REPO / "tests" / "fixtures" / "ajv_validate.js"


@pytest.fixture(scope="session")
def ajv() -> dict:
    """The environment that lets node find ajv: AJV_NODE_PATH, else .node/node_modules (.ci/run installs it)."""
    modules = Path(os.environ.get("AJV_NODE_PATH", feeds.REPO / ".node" / "node_modules"))
    missing = None
    if shutil.which("node") is None:
        missing = "node is not installed (apt-get install nodejs npm)"
    elif not (modules / "ajv" / "package.json").is_file():
        missing = f"ajv is not installed in {modules} (npm install --prefix .node ajv@8)"
    if missing is not None:
        if os.environ.get("CI"):  # .ci/run installs both: there a missing one is a failure
            pytest.fail(f"CI is set but {missing}")
        pytest.skip(missing)
    return {**os.environ, "NODE_PATH": str(modules)}


def ajv_check(env: dict, messages: list[dict]) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(AJV_SCRIPT), str(SCHEMA)], input=json.dumps(messages), env=env,
                          capture_output=True, text=True, timeout=60)


def test_schema_compiles_under_ajv_strict_mode(ajv):
    done = ajv_check(ajv, [])
    assert done.returncode == 0, done.stdout + done.stderr
    bad = ajv_check(ajv, [{"type": "event", "version": 1, "phase": "end"}, {"type": "result", "version": 1}])
    assert bad.returncode == 1 and len(json.loads(bad.stdout)["errors"]) == 2  # it does check


def kind_of(msg: dict) -> tuple:
    detail = {"status": "state", "event": "phase", "reply": "ok"}.get(msg["type"])
    return (msg["type"], msg[detail]) if detail else (msg["type"],)


EVERY_KIND = ({("result",), ("snapshot",), ("reply", True), ("reply", False)}
              | {("status", s) for s in STATES} | {("event", p) for p in ("start", "update", "end")})


def built_messages() -> list[dict]:
    """What a short run does not reach, from the same builders: every state, replies both ways."""
    out = []
    for state in STATES:
        stats = StreamStats("cam0", "rtsp://***@10.0.0.5/live")
        stats.state, stats.reason = state, "" if state == "running" else f"why {state}"
        out.append(protocol.stamp(protocol.status_message("cam0", stats.url, stats.snapshot()), published_ts=1.0))
    out.append(protocol.reply(True, streams=["cam0"]))
    out.append(protocol.error_reply("no such stream 'x'; known: cam0"))
    return out


def refused_request(address: str) -> dict:
    """The snapshot socket's answer to a request of too many frames (its reply, as sent)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        sock.send_multipart([protocol.SNAPSHOT_REQUEST] + [b"s"] * MAX_REQUEST_FRAMES)
        assert sock.poll(10_000), "no answer to an over-limit request"
        head, body = sock.recv_multipart()
        return json.loads(body)
    finally:
        sock.close()


@pytest.mark.timeout(240)
def test_every_message_type_a_run_produces_is_valid_for_both_validators(tiny_model, tmp_path, validate, ajv):
    clip = tmp_path / "clip.mp4"
    write_video(clip, Scene(3, 160, 120, 25.0), 40)
    config = tmp_path / "run.yaml"
    config.write_text("\n".join([
        "sources:",
        "  - {id: live, url: 'testpattern://?fps=20'}",
        f"  - {{id: clip, url: '{clip}', mode: file}}",
        f"  - {{id: missing, url: '{tmp_path / 'nothing.mp4'}'}}",
        f"  - {{id: lost, url: '{feeds.refused_url()}', options: {{open_timeout_s: 1, backoff_initial_s: 0.2}}}}",
        "window: {stride: 2, hop: 2}",
        "events: {update_interval_s: 0.2, default: {enter: 0.1, exit: 0.05, min_duration_s: 0.0}}",
    ]) + "\n")
    publish, snapshot = feeds.free_tcp_address(), feeds.free_tcp_address()
    collected = Collector(publish, ("result.", "status.", "event."))
    try:
        with feeds.Pipeline(["--config", str(config), "--model", str(tiny_model), "--publish", publish,
                             "--snapshot", snapshot, "--wait-subscribers", "1"], tmp_path / "run.log") as run:

            def reached() -> bool:
                assert run.proc.poll() is None, run.stderr()[-2000:]
                return {("status", s) for s in ("connecting", "running", "ended", "failed", "backoff")} \
                    | {("result",), ("event", "start"), ("event", "update")} <= {kind_of(m) for m in collected.messages}

            assert feeds.wait_until(reached, 120), ({kind_of(m) for m in collected.messages}, run.stderr()[-2000:])
            answers = [request_snapshot(snapshot, timeout=10), request_snapshot(snapshot, streams=["nope"], timeout=10),
                       refused_request(snapshot)]
            assert run.terminate(15) == 0, run.stderr()[-2000:]
        collected.close(drain_s=1.0)
    finally:
        collected.close()
    assert answers[1]["streams"] == {} and answers[2]["ok"] is False
    messages = collected.messages + answers + built_messages()
    assert EVERY_KIND <= {kind_of(m) for m in messages}, EVERY_KIND - {kind_of(m) for m in messages}
    for msg in messages:
        validate(msg)
    done = ajv_check(ajv, messages)
    assert done.returncode == 0, done.stdout[:3000] + done.stderr
    assert json.loads(done.stdout)["checked"] == len(messages)


def doc_block(text: str, heading: str, lang: str, nth: int = 0) -> str:
    """The ``nth`` fenced ``lang`` block after ``heading`` in a markdown text."""
    section = text[text.index(heading):]
    fence = f"```{lang}\n"
    start = -1
    for _ in range(nth + 1):
        start = section.index(fence, start + 1)
    return section[start + len(fence):section.index("```", start + len(fence))]


def test_protocol_doc_and_readme_match_the_code(validate):
    import yaml

    from streamer.core.stats import DROP_REASONS
    from streamer.outputs.snapshot import SnapshotConfig

    doc = (feeds.REPO / "docs" / "PROTOCOL.md").read_text()
    readme = (feeds.REPO / "README.md").read_text()
    # the status example is a valid message with every drop reason, and every field has a row in the table
    status = json.loads(doc_block(doc, "## `status.<stream>`", "json"))
    validate(status)
    assert set(status["counters"]["drops"]) == set(DROP_REASONS)
    built = protocol.status_message("s", "u", StreamStats("s", "u").snapshot())
    fields = [f for f in built if f not in ("type", "version", "stream", "counters")]
    fields += [f"counters.{c}" for c in built["counters"] if c != "drops"] + ["counters.drops.<reason>"]
    for field in fields:
        assert f"| `{field}` |" in doc, field
    # the events settings shown as the embedded default are configs/default.yaml's
    shipped = yaml.safe_load((feeds.REPO / "configs" / "default.yaml").read_text())["events"]
    shown = yaml.safe_load(doc_block(doc, "## `event.<stream>`", "yaml"))["events"]
    assert shown["default"] == shipped["default"] and "classes" not in shipped and "classes" not in shown
    # snapshot: on by default, its limits, the answer for unknown ids, CURVE
    default_address = yaml.safe_load((feeds.REPO / "configs" / "default.yaml").read_text())["snapshot"]["address"]
    assert "**on by default**" in doc and default_address in doc and f"bound by default on\n  `{default_address}`" in readme
    assert f"`snapshot.max_request_bytes` (default {SnapshotConfig().max_request_bytes})" in doc
    assert f"at most {MAX_REQUEST_FRAMES} frames" in doc and '`"streams": {}`' in doc
    assert "the snapshot socket is a CURVE server with the same key" in doc
    assert "SIGHUP" in doc and "CZMQ" in doc  # allow folder re-read; key file format named
    # README's status line: what statusline.format_status prints (a cumulative result count, not a rate)
    assert "windows/s" not in readme and "(state, fps, results so far, latency p50, drops)" in readme
