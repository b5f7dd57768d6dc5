"""Secrets kept out of what we print. The password of a ``scheme://user:password@host`` URL is
found and masked in one way for every URL the operator writes (``--state``, ``--mail``): it runs
to the *last* ``@``, so a password holding an unencoded ``@``, ``/``, ``?`` or ``#`` is still
hidden whole. Text a server wrote goes through :func:`scrub` before it is shown or kept: a
careless or hostile server may quote the secrets of our request back in its error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):.*@", re.DOTALL)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
"""A JSON Web Token (an access token, a federated or client assertion), known to us or not."""


def mask_password(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``."""
    return _USERINFO_PASSWORD.sub(r"\1:***@", url, count=1)


def userinfo_password(url: str) -> str | None:
    """The password of ``url``'s user info as written, or None."""
    match = _USERINFO_PASSWORD.match(url)
    return match.group(0)[len(match.group(1)) + 1 : -1] if match else None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret — as written, percent- or form-encoded, as a server may quote
    a request back — and anything shaped like a JSON Web Token replaced by ``***``."""
    forms = {form for secret in secrets if secret for form in _encodings(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return _JWT.sub("***", text)


def _encodings(secret: str) -> tuple[str, str, str]:
    return secret, quote(secret, safe=""), quote_plus(secret)
