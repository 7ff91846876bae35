"""The one helper that hides credentials in URLs before they reach a log, status message or error (S6).

One parser, :func:`secret_spans`, finds what is secret in a URL: its userinfo and the values of
secret query keys (:data:`SECRET_KEYS`); :func:`redact_url` replaces each with ``***``, and
:func:`redact` finds the URLs in any text (``scheme://`` up to white space or a double quote, ``<`` or
``>``, none of which a URL may hold unencoded) and redacts each.

Where the userinfo ends is read two ways and both are hidden: RFC 3986's (the last ``@`` before the
first ``/``, ``?`` or ``#``) and the last ``@`` of the whole URL, because in practice passwords hold
unencoded ``@``, ``/``, ``?`` or ``#`` as well as every RFC 3986 userinfo character (``'``, ``!``,
``$``, ``&``, ``;``, ``=``...). Hiding a bit too much (a query value with an ``@`` in it takes the host
with it) is fine; showing part of a password is not.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

MASK = "***"
#: query keys whose values are secrets (compared case-insensitively, after percent-decoding)
SECRET_KEYS = frozenset({"password", "passwd", "pass", "pwd", "pw", "passphrase", "token", "access_token",
                         "refresh_token", "id_token", "auth", "auth_token", "authorization", "secret",
                         "client_secret", "key", "apikey", "api_key", "api-key", "private_key", "signature",
                         "sig", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "credential",
                         "credentials", "session", "sessionid"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # where a URL starts in free text
_URL_END = frozenset(' \t\r\n\f\v"<>')  # characters a URL never holds unencoded


def _query_secrets(url: str, start: int) -> list[tuple[int, int]]:
    """Spans of secret values in the query that begins at ``url[start]`` (after its ``?``) and ends at ``#``.
    Pieces without ``=`` right after a secret value count as part of it (an unencoded ``&`` in it)."""
    end = url.find("#", start)
    end = len(url) if end < 0 else end
    spans, pos, hiding = [], start, False
    for pair in url[start:end].split("&"):
        key, eq, _ = pair.partition("=")
        if eq:
            hiding = unquote(key).strip().lower() in SECRET_KEYS
            if hiding:
                spans.append((pos + len(key) + 1, pos + len(pair)))
        elif hiding:
            spans.append((pos, pos + len(pair)))
        pos += len(pair) + 1
    return spans


def secret_spans(url: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every secret in ``url`` (which starts with ``scheme://``), merged and in order."""
    head = _SCHEME.match(url)
    if head is None:
        raise ValueError(f"not a URL: {url[:40]!r}")
    begin = head.end()
    authority_end = min((i for i in (url.find(c, begin) for c in "/?#") if i >= 0), default=len(url))
    spans = []
    for at in (url.rfind("@", begin, authority_end), url.rfind("@", begin)):  # RFC 3986's reading, then ours
        if at >= 0:
            spans.append((begin, at))
        query = url.find("?", max(at + 1, begin))
        if query >= 0:
            spans.extend(_query_secrets(url, query + 1))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def redact_url(url: str) -> str:
    """``url`` with its userinfo and the values of secret query keys replaced by ``***``."""
    out, pos = [], 0
    for start, end in secret_spans(url):
        out += [url[pos:start], MASK]
        pos = end
    out.append(url[pos:])
    return "".join(out)


def redact(text: object) -> str:
    """``text`` (a URL, or any message holding URLs) with every URL passed through :func:`redact_url`."""
    s = str(text)
    if "://" not in s:
        return s
    out, pos = [], 0
    for match in _SCHEME.finditer(s):
        if match.start() < pos:
            continue  # inside the URL just redacted
        end = match.end()
        while end < len(s) and s[end] not in _URL_END:
            end += 1
        out.append(s[pos:match.start()])
        out.append(redact_url(s[match.start():end]))
        pos = end
    out.append(s[pos:])
    return "".join(out)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose whole output (message, arguments, traceback) goes through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
