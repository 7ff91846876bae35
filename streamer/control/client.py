"""A Python client for the control socket (the ``python -m streamer.ctl`` CLI is built on it).

    from streamer.control import Client

    with Client("tcp://127.0.0.1:5557") as ctl:
        ctl.add({"id": "door", "url": "rtsp://10.0.0.5/live", "options": {"open_timeout_s": 3}})
        for s in ctl.list():
            print(s["id"], s["state"], s["fps"])
        ctl.remove("door")

The named methods return the reply's fields and raise :class:`~model.errors.ControlError` with the
reply's one-line ``error`` when the service refused; :meth:`Client.call` returns any reply as it came.
No reply within ``timeout`` seconds is a ControlError too; the socket is then replaced (a REQ socket
cannot send again before it received), so the client stays usable.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from model.errors import ControlError
from streamer.config import SourceConfig
from streamer.control.api import DEFAULT_ADDRESS
from streamer.control.entries import source_to_dict
from streamer.redact import redact


class Client:
    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 5.0, curve: Optional[dict] = None,
                 context=None, max_reply_bytes: int = 16 << 20) -> None:
        """``curve``: CURVE client options from :func:`streamer.outputs.security.client_options`."""
        import zmq

        self.address = address
        self.timeout = timeout
        self._zmq = zmq
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._curve = dict(curve or {})
        self._max_reply_bytes = max_reply_bytes
        self._sock = None

    def _socket(self):
        zmq = self._zmq
        if self._sock is None:
            sock = self._ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_reply_bytes)
            for option, value in self._curve.items():
                sock.setsockopt(option, value)
            sock.connect(self.address)
            self._sock = sock
        return self._sock

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def call(self, request: Mapping[str, Any]) -> dict:
        """Send one request, return the reply as it came (``ok`` true or false)."""
        sock = self._socket()
        sock.send(json.dumps(dict(request), separators=(",", ":"), allow_nan=False).encode("utf-8"))
        if not sock.poll(self.timeout * 1000, self._zmq.POLLIN):
            self._drop_socket()
            raise ControlError(f"no reply from {redact(self.address)} within {self.timeout:g} s; is run_stream.py "
                               "running with its control socket there (and, with CURVE, are the keys right)?")
        raw = sock.recv()
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            reply = None
        if not isinstance(reply, dict) or reply.get("type") != "reply" or not isinstance(reply.get("ok"), bool):
            raise ControlError(f"the reply from {redact(self.address)} is not a control reply; is that address a "
                               "control socket?")
        return reply

    def request(self, op: str, **fields: Any) -> dict:
        """``call`` for the named ``op``; the reply's fields, or ControlError with its error line."""
        reply = self.call({"op": op, **fields})
        if not reply["ok"]:
            raise ControlError(str(reply.get("error") or "request refused"))
        return reply

    # ---- one method per operation ------------------------------------------------------------
    def add(self, source: Mapping[str, Any] | SourceConfig) -> dict:
        return self.request("add", source=_entry(source))

    def remove(self, stream_id: str) -> dict:
        return self.request("remove", id=stream_id)

    def update(self, source: Mapping[str, Any] | SourceConfig) -> dict:
        return self.request("update", source=_entry(source))

    def list(self) -> list[dict]:
        return self.request("list")["sources"]

    def reload(self) -> dict:
        return self.request("reload")

    def health(self) -> dict:
        return self.request("health")

    def close(self) -> None:
        self._drop_socket()
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _entry(source: Mapping[str, Any] | SourceConfig) -> dict:
    return source_to_dict(source) if isinstance(source, SourceConfig) else dict(source)


__all__ = ["Client"]
