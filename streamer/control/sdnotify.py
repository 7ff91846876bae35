"""Tell systemd how the service is doing (``Type=notify``), without a dependency: ``sd_notify`` is one datagram.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace) and, with
``WatchdogSec=``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``. The service sends newline-separated
``KEY=VALUE`` lines: ``READY=1`` once it serves (start-up done), ``RELOADING=1`` + ``MONOTONIC_USEC``
then ``READY=1`` around a reload, ``STOPPING=1`` at shutdown, ``STATUS=...`` for ``systemctl status``,
and ``WATCHDOG=1`` at least every half watchdog period while the main loop is alive. Outside systemd
(no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self.address = address if address[:1] in ("/", "\0") else None  # vsock: not supported, nothing is sent
        self.watchdog_s: Optional[float] = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._next_ping = 0.0
        self._warned = False

    @property
    def active(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One notification; False when not under systemd or the socket refused (warned once)."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode("utf-8"))
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd on NOTIFY_SOCKET: %s", exc.strerror or exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def tick(self, now: float) -> None:
        """Call from the main loop: pings the watchdog every half period (a hung loop stops the pings)."""
        if self.watchdog_s is not None and now >= self._next_ping:
            self._next_ping = now + self.watchdog_s / 2
            self.send("WATCHDOG=1")


__all__ = ["Notifier"]
