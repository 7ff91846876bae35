"""Alerts: event messages to webhooks (JSON POST) and MQTT brokers, never in the publisher's way.

Each configured alert (``alerts: [...]``) is one sender thread with a bounded outbox. The publisher
thread only filters a sent message (phase, class, stream) and appends it (:meth:`Alerts.on_sent`);
a full outbox drops its *oldest* message and counts it. The sender delivers in order:

* **webhook** (``alert-webhook-N``): ``POST`` of the event message as JSON with a timeout, retried
  with capped exponential backoff on connection errors, timeouts, 5xx, 408 and 429; another 4xx is
  a permanent refusal (dropped, counted). Delivery is at-least-once: a retried request may have
  arrived before; ``X-Event-Id`` and ``X-Event-Phase`` (also in the body) let a receiver drop copies.
* **mqtt** (``alert-mqtt-N``, paho-mqtt): events on ``<prefix>/<stream>/event``, each stream's status
  on ``<prefix>/<stream>/status`` (retained; on a state change, else at most every
  ``status_interval_s``), ``<prefix>/available`` ``online``/``offline`` (retained; last will), all
  QoS 1. It reconnects with capped backoff; while disconnected the outbox holds what waits.

Problems show in the stream's status ``warnings`` until a later delivery succeeds (R27). Secrets
(URLs with credentials, headers, the MQTT password) are never logged: URLs go through
:func:`streamer.redact.redact`, the rest is never printed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque

from streamer.core.stats import StatsRegistry
from streamer.config import MqttAlert, WebhookAlert
from streamer.redact import redact
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)

_PERMANENT_OK = (408, 429)  # 4xx codes that are worth a retry


def split_credentials(url: str) -> tuple[str, str | None]:
    """``https://user:pass@host/x`` as (``https://host/x``, a Basic ``Authorization`` value); urllib
    sends no credentials from a URL itself."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
    return urlunsplit(parts._replace(netloc=netloc)), "Basic " + base64.b64encode(pair).decode("ascii")


class Outbox:
    """A bounded FIFO whose ``put`` never blocks: when full, the oldest item is dropped and returned."""

    def __init__(self, size: int) -> None:
        self._items: deque = deque()
        self.size = size
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item) -> object | None:
        with self._cond:
            oldest = None
            if len(self._items) >= self.size:
                oldest = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return oldest

    def get(self, timeout: float):
        """The oldest item, or None after ``timeout`` seconds."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)


class _Sender(threading.Thread):
    """What both senders share: the outbox, the stop event, warnings on the streams' status."""

    source = "alert"

    def __init__(self, name: str, queue_size: int, stats: StatsRegistry) -> None:
        super().__init__(name=name, daemon=False)
        self.outbox = Outbox(queue_size)
        self.stats = stats
        self.stop_event = threading.Event()
        self.delivered = 0
        self.failed = 0  # given up on (refused, or out of attempts)

    def enqueue(self, stream: str, item) -> None:
        dropped = self.outbox.put(item)
        if dropped is not None:
            self.warn(stream, f"{self.source}: {self.outbox.dropped} message(s) dropped (queue full); "
                              f"the receiver is slow or down")

    def warn(self, stream: str | None, text: str | None) -> None:
        for stats in self.stats:
            if stream is None or stats.stream == stream:
                stats.warn(self.source, text)

    def request_stop(self) -> None:
        self.stop_event.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        join_or_warn(self, timeout)
        self.finish()

    def finish(self) -> None:
        """After the join: say what was left undelivered."""
        if len(self.outbox):
            log.warning("%s: %d message(s) not delivered at shutdown", self.source, len(self.outbox))


class WebhookSender(_Sender):
    def __init__(self, config: WebhookAlert, stats: StatsRegistry, index: int = 0) -> None:
        super().__init__(f"alert-webhook-{index}", config.queue_size, stats)
        self.config = config
        self.url, self.basic = split_credentials(config.url.get_secret_value())
        self.shown = redact(config.url.get_secret_value())
        self.source = f"webhook {self.shown}"

    def on_sent(self, topic: str, payload: dict) -> None:
        if payload.get("type") == "event" and self.config.wants(payload):
            self.enqueue(str(payload.get("stream")), payload)

    def run(self) -> None:
        log.info("webhook alerts to %s", self.shown)
        try:
            while not self.stop_event.is_set():
                msg = self.outbox.get(0.2)
                if msg is not None:
                    self._deliver(msg)
        except Exception:
            log.exception("%s thread failed; no more webhook alerts", self.name)
            self.warn(None, f"{self.source}: the sender failed (see the log); no more alerts")

    def _deliver(self, msg: dict) -> None:
        cfg = self.config
        body = json.dumps(msg, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "timesformer-stream",
                   "X-Event-Id": str(msg.get("id", "")), "X-Event-Phase": str(msg.get("phase", ""))}
        if self.basic is not None:
            headers["Authorization"] = self.basic
        headers.update({k: v.get_secret_value() for k, v in cfg.headers.items()})
        stream = str(msg.get("stream"))
        attempt = 0
        while not self.stop_event.is_set():
            attempt += 1
            problem, retry = self._post(body, headers)
            if problem is None:
                self.delivered += 1
                self.warn(stream, None)
                return
            if not retry or (cfg.max_attempts and attempt >= cfg.max_attempts):
                self.failed += 1
                log.warning("[%s] %s: gave up on event %s %s after %d attempt(s): %s", stream, self.source,
                            msg.get("id"), msg.get("phase"), attempt, problem)
                self.warn(stream, f"{self.source}: {problem}; an event was not delivered")
                return
            delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (attempt - 1))
            log.info("[%s] %s: %s; retry %d in %.1f s", stream, self.source, problem, attempt, delay)
            self.warn(stream, f"{self.source}: {problem}; retrying")
            self.stop_event.wait(delay)

    def _post(self, body: bytes, headers: dict) -> tuple[str | None, bool]:
        """(None, _) when delivered, else (what went wrong, whether to retry)."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                response.read(65536)
            return None, False
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code}", exc.code >= 500 or exc.code in _PERMANENT_OK
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, timed out, reset, bad reply
            reason = getattr(exc, "reason", None) or exc
            return redact(f"{type(exc).__name__}: {reason}")[:160], True


class MqttSender(_Sender):
    def __init__(self, config: MqttAlert, stats: StatsRegistry, index: int = 0) -> None:
        super().__init__(f"alert-mqtt-{index}", config.queue_size, stats)
        self.config = config
        self.source = f"mqtt {config.host}:{config.port}"
        self.prefix = config.topic_prefix
        self.connected = threading.Event()
        self._last_status: dict[str, tuple[tuple, float]] = {}  # stream -> (state key, time sent)

    # ---- publisher thread -----------------------------------------------------------------------
    def on_sent(self, topic: str, payload: dict) -> None:
        kind, stream = payload.get("type"), str(payload.get("stream"))
        if kind == "event" and self.config.wants(payload):
            self.enqueue(stream, (f"{self.prefix}/{stream}/event", payload, False))
        elif kind == "status" and self.config.status:
            key = (payload.get("state"), payload.get("reason"), tuple(payload.get("warnings", ())))
            last = self._last_status.get(stream)
            now = time.monotonic()
            if last is None or last[0] != key or now - last[1] >= self.config.status_interval_s:
                self._last_status[stream] = (key, now)
                self.enqueue(stream, (f"{self.prefix}/{stream}/status", payload, True))

    # ---- the thread -----------------------------------------------------------------------------
    def _client(self):
        import paho.mqtt.client as mqtt

        cfg = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                             protocol=mqtt.MQTTv311)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls:
            client.tls_set()
        client.will_set(f"{self.prefix}/available", "offline", qos=1, retain=True)
        client.max_queued_messages_set(cfg.queue_size)

        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            if reason_code.is_failure:
                self._problem(f"broker refused the connection ({reason_code})")
                return
            client.publish(f"{self.prefix}/available", "online", qos=1, retain=True)
            self.connected.set()
            log.info("mqtt alerts: connected to %s", self.source)
            self.warn(None, None)

        def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
            if self.connected.is_set() and not self.stop_event.is_set():
                self._problem(f"disconnected ({reason_code})")
            self.connected.clear()

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        return client

    def _problem(self, text: str) -> None:
        log.warning("%s: %s", self.source, text)
        self.warn(None, f"{self.source}: {text}; retrying")

    def run(self) -> None:
        try:
            client = self._client()
        except Exception as exc:
            log.error("%s: cannot set up the MQTT client: %s", self.source, exc)
            self.warn(None, f"{self.source}: cannot set up the MQTT client: {exc}")
            return
        try:
            self._loop(client)
        except Exception:
            log.exception("%s thread failed; no more MQTT alerts", self.name)
            self.warn(None, f"{self.source}: the sender failed (see the log); no more alerts")
        finally:
            self._close(client)

    def _loop(self, client) -> None:
        attempts, next_try = 0, 0.0
        while not self.stop_event.is_set():
            if self.connected.is_set():
                attempts = 0
                self._publish_waiting(client)
            elif client.socket() is None:  # not connected, not connecting: (re)connect with capped backoff
                if time.monotonic() < next_try:
                    self.stop_event.wait(0.05)
                    continue
                attempts += 1
                delay = min(30.0, 0.5 * 2 ** (attempts - 1))
                next_try = time.monotonic() + delay
                try:
                    client.connect(self.config.host, self.config.port, self.config.keepalive_s)
                except OSError as exc:
                    self._problem(f"cannot connect ({exc.strerror or exc}); next try in {delay:.1f} s")
                    continue
            client.loop(timeout=0.05)

    def _publish_waiting(self, client) -> None:
        while self.connected.is_set():
            item = self.outbox.get(0.0)
            if item is None:
                return
            topic, payload, retain = item
            client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1, retain=retain)
            self.delivered += 1

    def _close(self, client) -> None:
        if self.connected.is_set():
            info = client.publish(f"{self.prefix}/available", "offline", qos=1, retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and time.monotonic() < deadline:
                client.loop(timeout=0.05)
            client.disconnect()
        client.loop(timeout=0.05)


class Alerts:
    """Every configured alert's sender; :meth:`on_sent` is the publisher listener."""

    def __init__(self, configs, stats: StatsRegistry) -> None:
        kinds = {"webhook": WebhookSender, "mqtt": MqttSender}
        if any(c.kind == "mqtt" for c in configs):
            try:
                import paho.mqtt.client  # noqa: F401
            except ImportError:
                from model.errors import ConfigError

                raise ConfigError("alerts: MQTT needs paho-mqtt: pip install -e '.[mqtt]'") from None
        self.senders = [kinds[c.kind](c, stats, i) for i, c in enumerate(configs)]

    def on_sent(self, topic: str, payload: dict) -> None:
        for sender in self.senders:
            sender.on_sent(topic, payload)

    def start(self) -> None:
        for sender in self.senders:
            sender.start()

    def stop(self) -> None:
        for sender in self.senders:
            sender.stop(getattr(sender.config, "timeout_s", 2.0) + 2.0)

    def finish(self) -> None:
        for sender in self.senders:
            sender.finish()
