"""An in-memory :class:`~streamer.control.api.SourceService` and a control server in front of it.

The fake keeps the same rules a real service keeps (duplicate and unknown ids, the source cap, no
changes while shutting down) so the transport, the client and the CLI are tested end to end
without a model or a camera.
"""

from __future__ import annotations

import functools
import threading

import pytest
import zmq

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
        return {"id": source.id, "session": f"s{self.sessions}", "state": "connecting"}

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
                                               reason="", session="s", fps=25.0, frames=10, results=2, drops=1)
                                for i, s in self.sources.items()]}

    def reload(self) -> dict:
        with self.lock:
            self.calls.append("reload")
            self._check_open()
            diff = api.diff_sources(self.sources.values(), self.config_sources)
            self.sources = {s.id: s for s in self.config_sources}
            self.states = {i: self.states.get(i, "connecting") for i in self.sources}
            return api.diff_reply(*diff)

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


@pytest.fixture
def zmq_context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def server(service, zmq_context):
    """A control server on a free loopback port in front of ``service``; stopped (and checked) after the test."""
    srv = ControlServer("tcp://127.0.0.1:*", functools.partial(requests.handle, service), zmq_context)
    srv.start_and_wait()
    yield srv
    srv.stop()
    assert not srv.is_alive()
