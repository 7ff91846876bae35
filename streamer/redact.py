"""The one helper that hides credentials in URLs before they reach a log, status message or error (S6)."""

from __future__ import annotations

import logging
import re

# Greedy up to the last "@" of the token: a password may itself contain "@", "/", "?" or "#"
# (hiding a bit too much of a URL is fine; showing part of a password is not).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s'\"<>]+)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|secret|key|auth|apikey|api_key)=)[^&#\s]*",
                           re.IGNORECASE)


def redact(text: object) -> str:
    """``text`` (any URL or message) with ``user:password@`` and secret query values replaced by ``***``."""
    s = str(text)
    if "@" in s:
        s = _USERINFO.sub(r"\g<scheme>***@", s)
    if "=" in s:
        s = _SECRET_QUERY.sub(r"\g<key>***", s)
    return s


class RedactingFormatter(logging.Formatter):
    """A log formatter whose whole output (message, arguments, traceback) goes through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
