"""The password of a ``scheme://user:password@host`` URL, found and masked in one way for every
URL the operator writes (``--state``, ``--mail``): it runs to the *last* ``@``, so a password
holding an unencoded ``@``, ``/``, ``?`` or ``#`` is still hidden whole. And a token, wherever a
server's reply repeats it (:func:`redact`)."""

from __future__ import annotations

import re
import urllib.parse

_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):.*@", re.DOTALL)


def mask_password(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", url, count=1)


def userinfo_password(url: str) -> str | None:
    """The password of ``url``'s user info as written, or None."""
    match = _USERINFO_PASSWORD.match(url)
    return match.group(0)[len(match.group(1)) + 1 : -1] if match else None


def redact(text: str, secret: str) -> str:
    """``text`` with ``secret``, as written or percent-encoded (in a URL), replaced by ``***``:
    for what a server says back, which may echo the credential it was sent."""
    if not secret:
        return text
    for form in sorted({secret, urllib.parse.quote(secret, safe="")}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text
