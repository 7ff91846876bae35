"""An in-memory :class:`~streamer.control.api.SourceService` and a control server in front of it.

The fake keeps the same rules a real service keeps (duplicate and unknown ids, the source cap, no
changes while shutting down) so the transport, the client and the CLI are tested end to end
without a model or a camera.
"""

from __future__ import annotations

import functools
import threading

import pytest

from model.errors import ControlError
from streamer.config import SourceConfig
from streamer.control import api, requests
from streamer.control.server import ControlServer
from streamer.redact import redact


class FakeService:
    def __init__(self, max_sources: int = 4) -> None:
        self.sources: dict[str, SourceConfig] = {}
        self.states: dict[str, str] = {}
        self.config_sources: list[SourceConfig] = []  # what reload reads
        self.allow_list: dict = {}  # reload's CURVE fields (allow_list_keys, allow_list_error) when CURVE is on
        self.max_sources = max_sources
        self.shutting_down = False
        self.calls: list[str] = []
        self.sessions = 0
        self.lock = threading.Lock()

    def _check_open(self) -> None:
        if self.shutting_down:
            raise ControlError("the service is shutting down; nothing was changed")

    def _start(self, source: SourceConfig) -> dict:
        self.sources[source.id] = source
        self.states[source.id] = "connecting"
        self.sessions += 1
        return {"id": source.id, "session": f"{self.sessions:08x}", "state": "connecting"}

    def add(self, source: SourceConfig) -> dict:
        with self.lock:
            self.calls.append("add")
            self._check_open()
            if source.id in self.sources:
                raise ControlError(f"id {source.id!r} is already running; use update to change it")
            if len(self.sources) >= self.max_sources:
                raise ControlError(f"{len(self.sources)} streams run, run.max_sources is {self.max_sources}")
            return self._start(source)

    def remove(self, stream_id: str) -> dict:
        with self.lock:
            self.calls.append("remove")
            self._check_open()
            if stream_id not in self.sources:
                raise ControlError(f"no stream {stream_id!r}; running: {', '.join(self.sources) or 'none'}")
            del self.sources[stream_id], self.states[stream_id]
            return {"id": stream_id}

    def update(self, source: SourceConfig) -> dict:
        with self.lock:
            self.calls.append("update")
            self._check_open()
            if source.id not in self.sources:
                raise ControlError(f"no stream {source.id!r}; use add")
            return self._start(source)

    def list(self) -> dict:
        with self.lock:
            self.calls.append("list")
            return {"sources": [api.list_entry(s, url=redact(s.url), mode=s.mode or "live", state=self.states[i],
                                               reason="", session="0000000a", fps=25.0, frames=10, results=2, drops=1)
                                for i, s in self.sources.items()]}

    def reload(self) -> dict:
        with self.lock:
            self.calls.append("reload")
            self._check_open()
            diff = api.diff_sources(self.sources.values(), self.config_sources)
            self.sources = {s.id: s for s in self.config_sources}
            self.states = {i: self.states.get(i, "connecting") for i in self.sources}
            return {**api.diff_reply(*diff), **self.allow_list}

    def health(self) -> dict:
        return api.assess(self.list()["sources"])


@pytest.fixture(scope="session")
def fake_service_class() -> type:
    return FakeService


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture(scope="session")
def control_schema(protocol_schema):
    """``check(kind, message)``: validates against ``#/$defs/control_<kind>`` of docs/protocol.schema.json."""
    import jsonschema

    validators = {kind: jsonschema.Draft202012Validator({"$defs": protocol_schema["$defs"],
                                                         "$ref": f"#/$defs/control_{kind}"})
                  for kind in ("request", "reply")}

    def check(kind: str, message: dict) -> None:
        validators[kind].validate(message)

    return check


def fields(reply: dict) -> dict:
    """A reply without what every reply has (``type``, ``published_ts``)."""
    return {k: v for k, v in reply.items() if k not in ("type", "published_ts")}


@pytest.fixture(scope="session")
def reply_fields():
    return fields


@pytest.fixture
def server(service, zmq_context):
    """A control server on a free loopback port in front of ``service``; stopped (and checked) after the test."""
    srv = ControlServer("tcp://127.0.0.1:*", functools.partial(requests.handle, service), zmq_context)
    srv.start_and_wait()
    yield srv
    srv.stop()
    assert not srv.is_alive()


# ---- a real pipeline in this process, with its control socket ---------------------------------------
class Running:
    """``streamer.pipeline.Pipeline`` run in a thread (tiny model, CPU, test-pattern sources), its control
    socket on a free loopback port, a Client on it, and a Collector of every message it publishes."""

    def __init__(self, model, sources: list[dict], *, extra: dict | None = None) -> None:
        from streamer.configfile import build_config
        from streamer.pipeline import Pipeline
        from streamer.subscribe import Collector
        from streamer.testing.processes import ANY_PORT

        data = {
            "sources": sources,
            "window": {"stride": 1, "hop": 2},
            "batching": {"max_batch": 4, "max_wait_ms": 2},
            "model": {"source": str(model), "threads": 1, "precision": "fp32", "device": "cpu"},
            "publisher": {"address": ANY_PORT, "heartbeat_s": 0.5},
            "logging": {"status_line": "off"},
            "events": {"enabled": False},
            "ui": {"enabled": False}, "clips": {"enabled": False},
            "control": {"address": "tcp://127.0.0.1:*"},
        }
        for key, value in (extra or {}).items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
        self.pipeline = Pipeline(build_config(data))
        self.stop = threading.Event()
        self.code = None
        self._thread = threading.Thread(target=self._run, name="test-pipeline")
        self._thread.start()
        from streamer.testing.processes import wait_until

        # the publisher's endpoint (a port the system picked), read back from it once bound
        self.address = wait_until(lambda: self.pipeline.publisher is not None and self.pipeline.publisher.endpoint
                                  or self.code is not None, 120, 0.01)
        assert isinstance(self.address, str), f"the pipeline ended with {self.code} before its publisher bound"
        self.collector = Collector(self.address, ("result.", "status.", "event."), rcvhwm=100000)
        control = wait_until(lambda: self.pipeline.control is not None and self.pipeline.control.endpoint
                             or self.code is not None, 120, 0.05)
        assert isinstance(control, str), f"the pipeline ended with {self.code} before its control socket bound"
        # the subscription has reached the publisher (slow joiner): a heartbeat came through
        assert wait_until(lambda: self.collector.messages, 30), "the collector received nothing in 30 s"
        from streamer.control import Client

        self.client = Client(control, timeout=10.0)

    def _run(self) -> None:
        self.code = self.pipeline.run(self.stop)

    def messages(self, kind: str | None = None, stream: str | None = None) -> list[dict]:
        return [m for m in list(self.collector.messages)
                if (kind is None or m["type"] == kind) and (stream is None or m["stream"] == stream)]

    def wait_results(self, stream: str, count: int = 1, session: str | None = None, timeout: float = 60.0):
        from streamer.testing.processes import wait_until

        def enough():
            got = [m for m in self.messages("result", stream) if session is None or m["session"] == session]
            return got if len(got) >= count else None

        got = wait_until(enough, timeout, 0.02)
        assert got is not None, f"{stream}: fewer than {count} results within {timeout} s"
        return got

    def close(self) -> int:
        if self.stop.is_set():
            return self.code
        self.client.close()
        self.stop.set()
        self._thread.join(30)
        self.collector.close(0.2)
        assert not self._thread.is_alive(), "the pipeline did not stop within 30 s"
        return self.code


@pytest.fixture
def running(tiny_model):
    """``running(sources, extra=None)``: a started in-process pipeline; closed (and checked) after the test."""
    started = []

    def start(sources: list[dict], extra: dict | None = None) -> Running:
        run = Running(tiny_model, sources, extra=extra)
        started.append(run)
        return run

    yield start
    for run in started:
        assert run.close() == 0
