"""Delivery through Microsoft Graph: ``graph://SENDER`` sends each message as that mailbox.

Exchange Online is where our tenants' mail goes out, and it turns SMTP basic authentication off.
Graph's ``POST /v1.0/users/{SENDER}/sendMail`` takes the MIME message we composed, base64-encoded
with ``Content-Type: text/plain``, so the Message-ID, headers and both parts are exactly what the
Maildir and SMTP paths send; ``202 Accepted`` means delivered.

Credentials are app-only and never in the URL: the standard ``AZURE_TENANT_ID``,
``AZURE_CLIENT_ID`` and one of ``AZURE_CLIENT_SECRET``, ``AZURE_CLIENT_CERTIFICATE_PATH`` or
``AZURE_FEDERATED_TOKEN_FILE`` (workload identity federation: no stored secret), through
Microsoft's ``azure-identity``, which caches the token for the run and renews it when it expires.
``AZURE_AUTHORITY_HOST`` and ``RECONCILER_GRAPH_URL`` select a sovereign cloud.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .base import (
    AuthenticationFailure,
    ConnectionFailure,
    Pending,
    PermanentFailure,
    SetupFailure,
    TemporaryFailure,
    Throttled,
    Transport,
)

GRAPH_URL_ENV = "RECONCILER_GRAPH_URL"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
KNOWN_AUTHORITIES = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"}
)
"""Authority hosts azure-identity validates itself; any other (a private or test cloud) is used
without asking Microsoft's public cloud first (``disable_instance_discovery``)."""
THROTTLED_STATUS = frozenset({429, 503, 504})
MAX_RETRY_AFTER = 120.0
"""The longest single wait for ``Retry-After``: longer, and the rest waits for the next apply."""
THROTTLE_RETRIES = 3
TIMEOUT = 60.0


class Credential(Protocol):
    def get_token(self, *scopes: str) -> Any: ...


def scope_for(resource: str) -> str:
    """The app-only scope of a resource URL (``https://graph.microsoft.com/.default``)."""
    parts = urllib.parse.urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}/.default"


def app_credential(env: Mapping[str, str] = os.environ) -> Credential:
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
    try:
        if env.get("AZURE_CLIENT_SECRET"):
            return ClientSecretCredential(tenant, client, env["AZURE_CLIENT_SECRET"], **options)
        if env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            return CertificateCredential(
                tenant,
                client,
                env["AZURE_CLIENT_CERTIFICATE_PATH"],
                password=env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
                **options,
            )
        if env.get("AZURE_FEDERATED_TOKEN_FILE"):
            return WorkloadIdentityCredential(
                tenant_id=tenant,
                client_id=client,
                token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
                **options,
            )
    except (OSError, ValueError) as error:  # an unreadable certificate, a malformed value
        raise SetupFailure(
            f"cannot use the app credential from the AZURE_* variables: {_os_reason(error)}"
        ) from None
    raise SetupFailure(
        "no app credential: set AZURE_CLIENT_SECRET, "
        "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE"
    )


def access_token(credential: Credential, scope: str) -> str:
    """A token for ``scope`` (cached by the credential); a refusal is an AuthenticationFailure
    whose text is the identity platform's first line, never the secret."""
    from azure.core.exceptions import ClientAuthenticationError

    try:
        return str(credential.get_token(scope).token)
    except OSError as error:  # the federated token file is missing or unreadable
        raise AuthenticationFailure(
            f"cannot get a token for {scope}: {_os_reason(error)}"
        ) from None
    except ClientAuthenticationError as error:
        first = " ".join(
            (str(error.message or error).strip().splitlines() or ["refused"])[0].split()
        )
        raise AuthenticationFailure(f"cannot get a token for {scope}: {first[:300]}") from None


class GraphTransport(Transport):
    """Sends each message with ``sendMail`` as ``sender``; throttling (429, 503, 504) is waited
    out per ``Retry-After`` a few times, then the run stops with the rest queued."""

    def __init__(
        self,
        sender: str,
        *,
        env: Mapping[str, str] = os.environ,
        credential: Credential | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.sender = sender
        self.graph_url = (env.get(GRAPH_URL_ENV) or DEFAULT_GRAPH_URL).rstrip("/")
        self.description = f"graph://{sender} ({urllib.parse.urlsplit(self.graph_url).netloc})"
        self._env = env
        self._credential = credential
        self._sleep = sleep
        self._url = f"{self.graph_url}/v1.0/users/{urllib.parse.quote(sender, safe='@')}/sendMail"

    def send(self, message: Pending) -> None:
        if self._credential is None:
            self._credential = app_credential(self._env)
        token = access_token(self._credential, scope_for(self.graph_url))
        body = base64.b64encode(message.data)
        for attempt in range(THROTTLE_RETRIES + 1):
            status, retry_after, detail = self._post(body, token)
            if status == 202:
                return
            if status in THROTTLED_STATUS:
                wait = _retry_after(retry_after)
                if attempt < THROTTLE_RETRIES and wait <= MAX_RETRY_AFTER:
                    self._sleep(wait)
                    continue
                raise Throttled(
                    f"{self.description} is throttling ({status} {detail}); retry after {wait:g} s"
                )
            raise self._refusal(status, detail)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: bytes, token: str) -> tuple[int, str | None, str]:
        """``(status, Retry-After, Graph's error text)`` of one sendMail request."""
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        )
        try:
            with _OPENER.open(request, timeout=TIMEOUT) as response:
                return response.status, None, ""
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Retry-After"), _graph_error(error)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ConnectionFailure(f"cannot reach {self.description}: {reason}") from None

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
        return TemporaryFailure(said)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The bearer token goes to Graph only: a redirect is an answer, never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _graph_error(error: urllib.error.HTTPError) -> str:
    """``code: message`` from Graph's JSON error, on one line."""
    try:
        found = json.loads(error.read().decode("utf-8")).get("error", {})
        text = f"{found.get('code', '')}: {found.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, OSError):
        text = str(error.reason or "")
    return " ".join(text.split())[:300]


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
