"""The ``--mail`` URL: which transport it names, with what settings.

The URL is the one setting the operator writes by hand and the one most likely to hold a secret,
so every message about it goes through :func:`redact`, and a password may come from
``RECONCILER_SMTP_PASSWORD`` instead of the URL (it then stays out of process listings and CI
logs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from reconciler.delivery.base import Transport
from reconciler.delivery.graph import AppCredential, GraphTransport, app_credential
from reconciler.delivery.maildir import MaildirTransport
from reconciler.delivery.smtp import DEFAULT_PORTS, SCHEMES, Mode, SMTPTransport, Timeouts
from reconciler.redaction import mask_password

PASSWORD_ENV = "RECONCILER_SMTP_PASSWORD"
_MODES: dict[str, Mode] = {scheme: mode for mode, scheme in SCHEMES.items()}
_USAGE = (
    "use maildir:PATH, graph://SENDER, smtp://[USER@]HOST[:PORT], smtp+starttls://... or "
    "smtps://..."
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: safe to print and log."""
    return mask_password(url)


def open_transport(
    url: str, *, default_from: str | None = None, env: Mapping[str, str] = os.environ
) -> Transport:
    """The transport a ``--mail`` URL names (not yet connected).

    ``maildir:PATH`` (relative or absolute), ``smtp://[user[:password]@]host[:port]``,
    ``smtp+starttls://...`` and ``smtps://...`` (default ports 25, 587, 465). The password is
    percent-decoded from the URL or, when the URL has a user but no password, read from
    ``RECONCILER_SMTP_PASSWORD`` in ``env``. SMTP needs ``default_from`` (the deployment's
    sender address). A bad URL raises :class:`ValueError` with one line that never contains
    the password.
    """
    scheme, colon, rest = url.partition(":")
    if colon and scheme.lower() == "maildir":
        return MaildirTransport(_maildir_path(rest))
    if colon and scheme.lower() == "graph":
        return GraphTransport(graph_sender(url), env=env)
    mode = _MODES.get(scheme.lower()) if colon else None
    if mode is None:
        if colon and _SCHEME.fullmatch(scheme):
            raise ValueError(f"unsupported mail URL scheme {scheme!r}: {_USAGE}")
        raise ValueError(f"mail URL must start with a scheme: {_USAGE}")
    if not rest.startswith("//"):
        raise ValueError(f"{scheme} URL must look like {scheme}://[USER@]HOST[:PORT]")
    return _smtp_transport(url, mode, default_from, env)


def graph_sender(url: str) -> str:
    """The mailbox of ``graph://SENDER``; credentials never go in this URL."""
    parts = urlsplit(url)
    sender = unquote(parts.netloc)
    if (
        parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or sender.count("@") != 1
        or ":" in sender
        or not all(sender.split("@"))
    ):
        raise ValueError(
            f"mail URL {redact(url)} must be graph://SENDER, the mailbox that "
            "sends (credentials come from AZURE_* variables, never the URL)"
        )
    return sender


def _maildir_path(rest: str) -> str:
    """``maildir:PATH``; ``maildir:///abs`` is accepted too, since URL habits are strong."""
    if rest.startswith("///"):
        rest = rest[2:]
    elif rest.startswith("//"):
        raise ValueError("maildir URL has a host part: use maildir:PATH or maildir:/absolute/path")
    if not rest:
        raise ValueError("maildir URL has no path: use maildir:PATH")
    return rest


def _smtp_transport(
    url: str, mode: Mode, default_from: str | None, env: Mapping[str, str]
) -> SMTPTransport:
    shown = redact(url)
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.fragment or "@" in parts.query:
        raise ValueError(
            f"mail URL {shown} has something after host:port "
            "(a password containing / ? or # must be percent-encoded)"
        )
    params = _parameters(parts.query, shown)
    host, port = _address(parts, shown)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if password is not None and username is None:
        raise ValueError(f"mail URL {shown} has a password but no user name")
    if not default_from:
        raise ValueError(
            "SMTP delivery needs the deployment's sender address: "
            "set --default-from or RECONCILER_DEFAULT_FROM"
        )
    password, token = _secret(username, password, params, shown, env)
    if mode == "plain" and username is not None and not params.allow_plaintext_auth:
        raise ValueError(
            f"mail URL {shown} would send its credentials unencrypted over plain smtp://: use "
            "smtp+starttls:// or smtps://, or add ?allow_plaintext_auth=true for a relay on a "
            "network you trust"
        )
    return SMTPTransport(
        host,
        port or DEFAULT_PORTS[mode],
        mode,
        username,
        password,
        timeouts=Timeouts(final_reply=params.final_reply_timeout),
        default_from=default_from,
        token=token,
    )


def _address(parts: SplitResult, shown: str) -> tuple[str, int | None]:
    """The URL's host and port (None: the scheme's default)."""
    if not parts.hostname:
        raise ValueError(f"mail URL {shown} has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"mail URL {shown}: the port must be a number from 1 to 65535")
    return parts.hostname, port


def _secret(
    username: str | None,
    password: str | None,
    params: _Parameters,
    shown: str,
    env: Mapping[str, str],
) -> tuple[str | None, Callable[[], str] | None]:
    """The password (from the URL or ``RECONCILER_SMTP_PASSWORD``), or with ``?auth=xoauth2``
    the source of OAuth tokens (the app's credential)."""
    if params.auth == "xoauth2":
        if username is None or password is not None:
            raise ValueError(
                f"mail URL {shown}: ?auth=xoauth2 needs the sending mailbox as the "
                "user (smtp+starttls://SENDER@host) and no password: the token "
                "comes from the AZURE_* variables"
            )
        return None, _oauth_token(env)
    if username is not None and password is None:
        password = env.get(PASSWORD_ENV)
        if not password:
            raise ValueError(
                f"mail URL {shown} names user {username!r} but no password: "
                f"set {PASSWORD_ENV} (or put it, percent-encoded, in the URL)"
            )
    return password, None


OUTLOOK_SCOPE_ENV = "RECONCILER_SMTP_OAUTH_SCOPE"
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"


def _oauth_token(env: Mapping[str, str]) -> Callable[[], str]:
    """Tokens for Exchange Online SMTP from the app's credential, made on first use (a bad
    setting then fails the first message, reported like any setup failure)."""
    credential: list[AppCredential] = []

    def token() -> str:
        if not credential:
            credential.append(app_credential(env))
        return credential[0].token(env.get(OUTLOOK_SCOPE_ENV) or OUTLOOK_SCOPE)

    return token


class _Parameters:
    """The query parameters an SMTP URL may carry; anything else is refused, not ignored."""

    allow_plaintext_auth = False
    final_reply_timeout = Timeouts.final_reply
    auth = "password"


_PARAMETERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "allow_plaintext_auth": ("true or false", {"true": True, "false": False}.__getitem__),
    "final_reply_timeout": ("a number of seconds, at least 1", float),
    "auth": ("password or xoauth2", {"password": "password", "xoauth2": "xoauth2"}.__getitem__),
}


def _parameters(query: str, shown: str) -> _Parameters:
    found = _Parameters()
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _PARAMETERS:
            raise ValueError(
                f"mail URL {shown}: unknown parameter {key!r}; known: "
                f"{', '.join(sorted(_PARAMETERS))}"
            )
        expected, convert = _PARAMETERS[key]
        try:
            parsed = convert(value.lower())
        except (KeyError, ValueError):
            raise ValueError(f"mail URL {shown}: {key} must be {expected}") from None
        if key == "final_reply_timeout" and not 1 <= parsed < float("inf"):
            raise ValueError(f"mail URL {shown}: {key} must be {expected}")
        setattr(found, key, parsed)
    return found
