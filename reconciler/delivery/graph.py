"""Delivery through Microsoft Graph: ``graph://SENDER`` sends each message as that mailbox.

Exchange Online is where our tenants' mail goes out, and it turns SMTP basic authentication off.
Graph's ``POST /v1.0/users/{SENDER}/sendMail`` takes the MIME message we composed, base64-encoded
with ``Content-Type: text/plain``, so the Message-ID, headers and both parts are exactly what the
Maildir and SMTP paths send; ``202 Accepted`` means delivered.

Credentials are app-only and never in the URL: the standard ``AZURE_TENANT_ID``,
``AZURE_CLIENT_ID`` and one of ``AZURE_CLIENT_SECRET``, ``AZURE_CLIENT_CERTIFICATE_PATH`` or
``AZURE_FEDERATED_TOKEN_FILE`` (workload identity federation: no stored secret), through
Microsoft's ``azure-identity``, which caches the token for the run and renews it when it expires.
``AZURE_AUTHORITY_HOST`` and ``RECONCILER_GRAPH_URL`` select a sovereign cloud; Graph is reached
over https only, since the bearer token and the messages (PINs) travel in each request.

An email cannot be recalled, so a sendMail that may have been carried out is never repeated in
the same run. Only ``202`` is delivered; ``4xx`` is Graph refusing (nothing was sent); ``429`` and
``503`` with ``Retry-After`` are Graph's throttling (not processed: waited out, then tried
again). Anything else after the request went out — a cut connection, no reply before the
deadline, ``500``, ``502``, ``504``, a reply that is not HTTP — leaves the message *in doubt*,
exactly as SMTP's missing final reply: it stays queued and the next apply sends it again with
the same Message-ID.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from reconciler.redaction import mask_password, scrub

from . import https
from .base import (
    BUDGET_USED_UP,
    AuthenticationFailure,
    ConnectionFailure,
    InDoubt,
    OutOfTime,
    Pending,
    PermanentFailure,
    SetupFailure,
    Throttled,
    Transport,
)

GRAPH_URL_ENV = "RECONCILER_GRAPH_URL"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
LOOPBACK_HTTP_ENV = "RECONCILER_GRAPH_ALLOW_LOOPBACK_HTTP"
"""``true`` lets ``RECONCILER_GRAPH_URL`` be plain ``http://`` to a loopback address: a fake
Graph in tests, never a network."""
KNOWN_AUTHORITIES = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"}
)
"""Authority hosts azure-identity validates itself; any other (a private or test cloud) is used
without asking Microsoft's public cloud first (``disable_instance_discovery``)."""
SECRET_ENV = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD")
MAX_RETRY_AFTER = 120.0
"""The longest single wait for ``Retry-After``: longer, and the rest waits for the next apply."""
THROTTLE_RETRIES = 3
TIMEOUT = 60.0
"""The longest one sendMail request may take, from connecting to the end of its reply; less
when the apply's delivery budget (``--delivery-timeout``) ends first."""
REPLY_LIMIT = 256 * 1024
"""The most of a reply's body read: Graph's JSON errors take a few hundred bytes."""


class Credential(Protocol):
    def get_token(self, *scopes: str) -> Any: ...


class AppCredential:
    """The app's credential and every secret it has handled — the AZURE_* secrets it was made
    from and each token it got — so that what a server says back can be scrubbed of them."""

    def __init__(self, credential: Credential, secrets: Iterable[str]) -> None:
        self._credential = credential
        self._secrets = {secret for secret in secrets if secret}

    def token(self, scope: str) -> str:
        """A token for ``scope`` (cached by the credential); a refusal is an
        AuthenticationFailure whose text is the identity platform's first line, never a
        secret."""
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = str(self._credential.get_token(scope).token)
        except OSError as error:  # the federated token file is missing or unreadable
            raise AuthenticationFailure(
                self.redact(f"cannot get a token for {scope}: {_os_reason(error)}")
            ) from None
        except ClientAuthenticationError as error:
            first = " ".join(
                (str(error.message or error).strip().splitlines() or ["refused"])[0].split()
            )
            raise AuthenticationFailure(
                self.redact(f"cannot get a token for {scope}: {first[:300]}")
            ) from None
        self._secrets.add(token)
        return token

    def redact(self, text: str) -> str:
        return scrub(text, self._secrets)


def scope_for(resource: str) -> str:
    """The app-only scope of a resource URL (``https://graph.microsoft.com/.default``)."""
    parts = urllib.parse.urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}/.default"


def graph_url(env: Mapping[str, str] = os.environ) -> str:
    """``RECONCILER_GRAPH_URL`` (default Microsoft's global Graph) as ``https://HOST[:PORT]``.
    Plain ``http`` only to a loopback address with ``RECONCILER_GRAPH_ALLOW_LOOPBACK_HTTP=true``:
    the bearer token and every message would otherwise cross the network readable. Anything
    else raises ValueError, one line that never shows a password."""
    value = env.get(GRAPH_URL_ENV) or DEFAULT_GRAPH_URL
    shown = f"{GRAPH_URL_ENV} {mask_password(value)!r}"
    usage = f"{shown} must be https://HOST[:PORT], Graph's root (default {DEFAULT_GRAPH_URL})"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(usage) from None
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or "@" in parts.netloc
        or port == 0
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(usage)
    if parts.scheme == "http":
        allowed = env.get(LOOPBACK_HTTP_ENV, "").lower()
        if allowed not in ("", "true", "false"):
            raise ValueError(f"{LOOPBACK_HTTP_ENV} must be true or false")
        if allowed != "true":
            raise ValueError(
                f"{shown} is plain http: the access token and every message, PINs included, "
                "would cross the network unencrypted; use https://"
            )
        if not _loopback(parts.hostname):
            raise ValueError(
                f"{shown}: {LOOPBACK_HTTP_ENV} allows plain http only to a loopback address "
                "(127.0.0.1, ::1, localhost); use https://"
            )
    return f"{parts.scheme}://{parts.netloc}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def app_credential(env: Mapping[str, str] = os.environ) -> AppCredential:
    """The app's credential from the standard Azure environment variables, with Microsoft's
    library. Raises SetupFailure naming what is missing (never a secret)."""
    try:
        from azure.identity import (
            CertificateCredential,
            ClientSecretCredential,
            WorkloadIdentityCredential,
        )
    except ModuleNotFoundError:
        raise SetupFailure(
            "Exchange Online delivery needs azure-identity: pip install "
            "'audio-conferencing-reconciler[exchange]'"
        ) from None
    tenant, client = env.get("AZURE_TENANT_ID"), env.get("AZURE_CLIENT_ID")
    if not tenant or not client:
        raise SetupFailure(
            "set AZURE_TENANT_ID and AZURE_CLIENT_ID (the app registration that "
            "may send mail), and one of AZURE_CLIENT_SECRET, "
            "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE"
        )
    options: dict[str, Any] = {}
    authority = env.get("AZURE_AUTHORITY_HOST")
    if authority:
        options["authority"] = authority
        host = urllib.parse.urlsplit(authority).hostname or authority
        if host not in KNOWN_AUTHORITIES:
            options["disable_instance_discovery"] = True
    secrets = [env.get(name, "") for name in SECRET_ENV]
    try:
        if env.get("AZURE_CLIENT_SECRET"):
            credential: Credential = ClientSecretCredential(
                tenant, client, env["AZURE_CLIENT_SECRET"], **options
            )
        elif env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            credential = CertificateCredential(
                tenant,
                client,
                env["AZURE_CLIENT_CERTIFICATE_PATH"],
                password=env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
                **options,
            )
        elif env.get("AZURE_FEDERATED_TOKEN_FILE"):
            credential = WorkloadIdentityCredential(
                tenant_id=tenant,
                client_id=client,
                token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
                **options,
            )
        else:
            raise SetupFailure(
                "no app credential: set AZURE_CLIENT_SECRET, "
                "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE"
            )
    except (OSError, ValueError) as error:  # an unreadable certificate, a malformed value
        raise SetupFailure(
            scrub(
                f"cannot use the app credential from the AZURE_* variables: {_os_reason(error)}",
                secrets,
            )
        ) from None
    return AppCredential(credential, secrets)


class GraphTransport(Transport):
    """Sends each message with ``sendMail`` as ``sender`` (see the module's docstring for
    what each answer means). ``RECONCILER_GRAPH_URL`` is checked when the transport is made,
    so a wrong one is refused before anything is committed or sent."""

    def __init__(
        self,
        sender: str,
        *,
        env: Mapping[str, str] = os.environ,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.sender = sender
        self.graph_url = graph_url(env)
        self.description = f"graph://{sender} ({urllib.parse.urlsplit(self.graph_url).netloc})"
        self._env = env
        self._credential: AppCredential | None = None
        self._context: ssl.SSLContext | None = None
        self._sleep = sleep
        self._url = f"{self.graph_url}/v1.0/users/{urllib.parse.quote(sender, safe='@')}/sendMail"

    def send(self, message: Pending, *, deadline: float | None = None) -> None:
        if self._credential is None:
            self._credential = app_credential(self._env)
        token = self._credential.token(scope_for(self.graph_url))
        body = base64.b64encode(message.data)
        for attempt in range(THROTTLE_RETRIES + 1):
            reply = self._post(body, token, deadline)
            if reply.status == 202:
                return
            detail = _graph_error(reply)
            wait = _throttle_wait(reply)
            if wait is None:
                raise self._refusal(reply.status, detail)
            if (
                attempt == THROTTLE_RETRIES
                or wait > MAX_RETRY_AFTER
                or (deadline is not None and time.monotonic() + wait >= deadline)
            ):
                raise Throttled(
                    f"{self.description} is throttling ({reply.status} {detail}); retry "
                    f"after {wait:g} s"
                )
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def redact(self, text: str) -> str:
        return text if self._credential is None else self._credential.redact(text)

    def _post(self, body: bytes, token: str, deadline: float | None) -> https.Reply:
        """One sendMail request, over by ``deadline`` and within :data:`TIMEOUT`."""
        now = time.monotonic()
        until = now + TIMEOUT if deadline is None else min(now + TIMEOUT, deadline)
        if until <= now:
            raise OutOfTime(BUDGET_USED_UP)
        if self._context is None and self.graph_url.startswith("https:"):
            self._context = ssl.create_default_context()  # only now: loading CAs is slow
        try:
            return https.post(
                self._url,
                body,
                {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                deadline=until,
                limit=REPLY_LIMIT,
                context=self._context,
            )
        except https.NotSent as error:
            raise ConnectionFailure(f"cannot reach {self.description}: {error}") from None
        except https.NoAnswer as error:
            raise self._in_doubt(f"gave no answer to sendMail ({error})") from None

    def _refusal(self, status: int, detail: str) -> Exception:
        said = f"{self.description} refused sendMail: {status} {detail}".rstrip()
        if status in (401, 403):
            return SetupFailure(
                f"{said}; the app needs the Mail.Send application permission with admin consent"
                f" and, where access is restricted, to be allowed to send as {self.sender} "
                "(RBAC for Applications or an application access policy)"
            )
        if status == 404:
            return SetupFailure(f"{said}; is {self.sender} a mailbox of this tenant?")
        if 400 <= status < 500:
            return PermanentFailure(said)
        return self._in_doubt(f"answered sendMail with {status} {detail}".rstrip())

    def _in_doubt(self, what: str) -> InDoubt:
        return InDoubt(
            f"in doubt: {self.description} {what}; it may have sent the message, so it is "
            "not sent again now: it stays queued and the next apply sends it again with the "
            "same Message-ID"
        )


def _throttle_wait(reply: https.Reply) -> float | None:
    """Seconds to wait when Graph is throttling (429, or 503 with ``Retry-After``: the request
    was not processed), else None."""
    retry_after = reply.headers.get("Retry-After")
    if reply.status == 429 or (reply.status == 503 and retry_after is not None):
        return _retry_after(retry_after)
    return None


def _graph_error(reply: https.Reply) -> str:
    """``code: message`` from Graph's JSON error on one line; else the reply's reason phrase
    (a proxy's HTML page, a cut or malformed body)."""
    try:
        found = json.loads(reply.body.decode("utf-8"))
    except (ValueError, RecursionError):
        found = None
    error = found.get("error") if isinstance(found, dict) else None
    fields = [error.get(key) for key in ("code", "message")] if isinstance(error, dict) else []
    text = ": ".join(value for value in fields if isinstance(value, str) and value)
    return " ".join((text or reply.reason).split())[:300]


def _os_reason(error: Exception) -> str:
    """``no such file or directory: /path`` or the error's first line, never a traceback."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror.lower()}{where}"
    return " ".join((str(error).splitlines() or [type(error).__name__])[0].split())[:300]


def _retry_after(value: str | None) -> float:
    """``Retry-After`` in seconds (a number or an HTTP date); 5 s when absent or unreadable."""
    if not value:
        return 5.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 5.0
    return max(0.0, when.timestamp() - time.time())
