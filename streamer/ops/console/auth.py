"""Who may open the console (S10).

With a token (required off loopback): a request carries ``Authorization: Bearer <token>`` or the
session cookie the login form sets (an HMAC of the token, never the token itself); anything else
gets 401. Without one (loopback only): requests must name a loopback host in ``Host``, so a web
page elsewhere cannot reach the console through DNS rebinding. The preview WebSocket also needs
an ``Origin`` naming the console itself when a browser sends one: browsers let any page open a
WebSocket anywhere, with the console's cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

COOKIE = "tfs_session"
_LOOPBACK_NAMES = {"localhost"}


def session_value(token: str) -> str:
    return hmac.new(token.encode("utf-8"), b"timesformer-console-session", hashlib.sha256).hexdigest()


def token_ok(token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(token.encode("utf-8"), given.encode("utf-8"))


def request_ok(token: str | None, headers, cookies) -> bool:
    """Whether a request may see the console (``headers``/``cookies``: the request's)."""
    if token is None:
        return loopback_host(headers.get("Host", ""))
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer ") and token_ok(token, auth[len("Bearer "):].strip()):
        return True
    cookie = cookies.get(COOKIE)
    return cookie is not None and hmac.compare_digest(cookie, session_value(token))


def same_origin(headers) -> bool:
    """A WebSocket upgrade from one of the console's own pages: its ``Origin`` names the ``Host`` it asks.
    Clients that are not browsers send no ``Origin`` and pass (they passed :func:`request_ok` already)."""
    origin = headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("Host", "").strip().lower()


def loopback_host(host_header: str) -> bool:
    """``Host: 127.0.0.1:8080``, ``localhost:8080``, ``[::1]:8080`` and the like."""
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
