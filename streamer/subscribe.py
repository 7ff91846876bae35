"""Read results from a running pipeline: an importable client and a small CLI.

    python -m streamer.subscribe tcp://127.0.0.1:5555 [--stream ID] [--count N] [--json] [--all]

prints results and action events (``--all`` adds every stream's status messages).

PUB/SUB is at-most-once: results sent before this subscriber connected, or dropped at the
publisher's SNDHWM, never arrive. Each stream's ``seq`` rises by one per result, so the client
counts gaps (:attr:`Subscriber.gaps`). Messages larger than ``max_bytes`` or not valid JSON objects
are dropped and counted, never unpickled.

Late joiners: :meth:`Subscriber.snapshot` (CLI ``--snapshot ADDRESS``) asks the pipeline's snapshot
socket for every stream's latest status, result and open events at once; the SUB socket is connected
first, so nothing published after the snapshot is missed, and a live copy of the snapshot's result
is skipped (ZeroMQ guide, "Clone" pattern).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Iterator

from streamer.outputs import protocol

DEFAULT_MAX_BYTES = 1 << 20


class Subscriber:
    """A SUB socket on ``address`` for ``topics`` (prefixes such as ``result.`` or ``status.cam0``)."""

    def __init__(self, address: str, topics: tuple[str, ...] = ("result.",), *, max_bytes: int = DEFAULT_MAX_BYTES,
                 rcvhwm: int = 10000, context=None, curve: dict | None = None) -> None:
        """``curve``: CURVE client options from :func:`streamer.outputs.security.client_options` (encrypted publisher)."""
        import zmq

        self._zmq = zmq
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        self._curve = curve  # also used for the snapshot socket
        for option, value in (curve or {}).items():
            self._sock.setsockopt(option, value)
        for topic in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        self._sock.connect(address)
        self.last_seq: dict[str, int] = {}
        self.gaps = 0  # results missed, by seq within a stream's session (a new session starts at seq 0)
        self._sessions: dict[str, object] = {}  # stream -> session of its latest result
        self.malformed = 0
        self._snapshot_results: dict[str, tuple[int, float]] = {}  # stream -> (seq, published_ts) in the snapshot

    def snapshot(self, address: str, *, streams: tuple[str, ...] = (), timeout: float = 3.0) -> dict | None:
        """``{"streams": {id: {"status", "result", "events"}}, ...}`` from a snapshot socket; None on timeout."""
        from streamer.outputs.snapshot import request_snapshot

        snap = request_snapshot(address, streams=streams, timeout=timeout, context=self._ctx, curve=self._curve)
        for stream, entry in (snap or {}).get("streams", {}).items():
            result = entry.get("result") or {}
            if isinstance(result.get("seq"), int):
                self._snapshot_results[stream] = (result["seq"], float(result.get("published_ts") or 0.0))
                self.last_seq[stream] = max(self.last_seq.get(stream, -1), result["seq"])
        return snap

    def recv(self, timeout: float | None = None) -> tuple[str, dict] | None:
        """The next well-formed message as (topic, dict), or None after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._sock.poll(None if left is None else left * 1000):
                return None
            frames = self._sock.recv_multipart()
            msg = self._decode(frames)
            if msg is not None:
                return msg
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _decode(self, frames: list[bytes]) -> tuple[str, dict] | None:
        if len(frames) != 2:
            self.malformed += 1
            return None
        try:
            topic = frames[0].decode("utf-8")
            payload = json.loads(frames[1])
        except (UnicodeDecodeError, ValueError):
            self.malformed += 1
            return None
        if not isinstance(payload, dict):
            self.malformed += 1
            return None
        if payload.get("type") == "result" and isinstance(payload.get("seq"), int):
            stream = str(payload.get("stream"))
            seen = self._snapshot_results.get(stream)
            if seen is not None and payload["seq"] <= seen[0] and (payload.get("published_ts") or 0.0) <= seen[1]:
                return None  # already in the snapshot (a restarted pipeline publishes later, so it passes)
            session = payload.get("session")
            if session != self._sessions.setdefault(stream, session):  # a new start: seq counts from 0 again
                self._sessions[stream] = session
                self.last_seq[stream] = -1
            last = self.last_seq.get(stream)
            if last is not None and payload["seq"] > last + 1:
                self.gaps += payload["seq"] - last - 1
            self.last_seq[stream] = payload["seq"]
        return topic, payload

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        while True:
            msg = self.recv()
            if msg is not None:
                yield msg

    def close(self) -> None:
        self._sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Collector:
    """A :class:`Subscriber` read by a background thread into :attr:`messages` until :meth:`close`
    (for scripts, benchmarks and tests that run a pipeline and score what it published)."""

    def __init__(self, address: str, topics: tuple[str, ...] = ("result.",), **options) -> None:
        self.subscriber = Subscriber(address, topics, **options)
        self.messages: list[dict] = []
        self.arrived: list[float] = []  #: wall-clock time each message of :attr:`messages` was received
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="collector", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            got = self.subscriber.recv(timeout=0.2)
            if got is not None:
                self.arrived.append(time.time())
                self.messages.append(got[1])

    @property
    def gaps(self) -> int:
        return self.subscriber.gaps

    def close(self, drain_s: float = 0.0) -> None:
        """Keep receiving for ``drain_s`` (messages still in flight), then stop and close the socket."""
        if self._stop.is_set():
            return
        time.sleep(drain_s)
        self._stop.set()
        self._thread.join()
        self.subscriber.close()

    def __enter__(self) -> "Collector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _number(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def format_result(msg: dict) -> str:
    """One human-readable line for a result, status or event message."""
    if msg.get("type") == "result":
        top = ", ".join(f"{t['label']} {t['score']:.2f}" for t in msg.get("top_k", [])[:3])
        lat = _number(msg.get("latency_ms", {}).get("capture_to_publish"), 0)
        frames = msg.get("window", {}).get("frame_indices", [])
        span = f"{frames[0]}-{frames[-1]}" if frames else "-"
        truth = msg.get("window", {}).get("label")  # ground truth, from labeled (synthetic) sources only
        shown = f" [truth: {truth}]" if truth else ""
        return f"[{msg.get('stream')}] #{msg.get('seq')} frames {span}: {top} (capture to publish {lat} ms){shown}"
    if msg.get("type") == "status":
        c = msg.get("counters", {})
        return (f"[{msg.get('stream')}] status {msg.get('state')} fps {msg.get('fps')} frames {c.get('frames')} "
                f"results {c.get('results')} drops {sum(c.get('drops', {}).values())}")
    if msg.get("type") == "event":
        return (f"[{msg.get('stream')}] event {msg.get('phase')} {msg.get('label')} {msg.get('id')} "
                f"frames {msg.get('start_frame')}-{msg.get('end_frame') if msg.get('end_frame') is not None else ''} "
                f"peak {_number(msg.get('peak_score'), 2)}")
    return f"[{msg.get('stream')}] {msg.get('type')}: {json.dumps(msg)[:200]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamer.subscribe", description="Print results from run_stream.py.")
    p.add_argument("address", help="ZeroMQ address the pipeline publishes on, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--stream", action="append", metavar="ID", help="only this stream (repeatable)")
    p.add_argument("--count", type=int, metavar="N", help="exit after N results")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--all", action="store_true",
                   help="also print every stream's status messages (results and events are printed by default)")
    p.add_argument("--snapshot", metavar="ADDRESS",
                   help="first print every stream's latest status, result and open events from this snapshot socket")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="exit with status 1 if no message arrives for this long")
    p.add_argument("--server-key", metavar="FILE", help="CURVE: the publisher's public key file (NAME.key)")
    p.add_argument("--client-key", metavar="FILE", help="CURVE: this client's secret key file (NAME.key_secret)")
    args = p.parse_args(argv)
    curve = None
    if bool(args.server_key) != bool(args.client_key):
        p.error("--server-key and --client-key go together")
    if args.server_key:
        from model.errors import RecognizerError
        from streamer.outputs.security import client_options

        try:
            curve = client_options(args.server_key, args.client_key)
        except RecognizerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.count is not None and args.count < 1:
        p.error("--count must be >= 1")
    kinds = (protocol.RESULT, protocol.EVENT) + ((protocol.STATUS,) if args.all else ())
    topics = tuple(protocol.topic(k, s) for k in kinds for s in (args.stream or [""]))
    results = 0
    try:
        with Subscriber(args.address, topics, curve=curve) as sub:
            if args.snapshot:
                snap = sub.snapshot(args.snapshot, streams=tuple(args.stream or ()), timeout=args.timeout or 3.0)
                if snap is None:
                    print(f"error: no snapshot from {args.snapshot}", file=sys.stderr)
                    return 1
                for entry in snap["streams"].values():
                    for msg in [entry["status"], entry["result"], *entry["events"]]:
                        if msg is not None:
                            print(json.dumps(msg, separators=(",", ":")) if args.json else format_result(msg), flush=True)
            while args.count is None or results < args.count:
                got = sub.recv(args.timeout)
                if got is None:
                    print(f"error: no message for {args.timeout} s", file=sys.stderr)
                    return 1
                topic, msg = got
                if args.stream and str(msg.get("stream")) not in args.stream:
                    continue  # a longer id sharing the prefix
                print(json.dumps(msg, separators=(",", ":")) if args.json else format_result(msg), flush=True)
                if msg.get("type") == "result":
                    results += 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
