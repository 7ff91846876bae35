"""The one helper that hides credentials in URLs before they reach a log, status message or error (S6)."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s?#]+)@")
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
