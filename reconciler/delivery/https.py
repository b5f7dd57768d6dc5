"""One HTTP POST bounded by a deadline for the whole exchange and by a cap on the reply read.

urllib gives each socket operation its own timeout, so a server that answers a byte at a time
holds the caller (and the tenant's lock) for as long as it likes, and it reads an error body
whole, however large. Graph's sendMail also needs to know *where* a request failed: before its
body was fully sent, the server cannot have acted on it (:class:`NotSent`); after, it may have
(:class:`NoAnswer`), and sending it again could deliver an email twice. Here connecting, the TLS
handshake, sending and reading the status, headers and body each get only the time left before
one deadline, and at most ``limit`` bytes of the body are read. A redirect is an answer like
any other, never followed: the request's Authorization goes to ``url`` only.

An ``https`` request goes through the proxy the environment names (``HTTPS_PROXY``, unless
``NO_PROXY`` exempts the host), as urllib's did: a CONNECT tunnel, TLS to the server inside it.
"""

from __future__ import annotations

import base64
import http.client
import io
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from reconciler.redaction import mask_password


class NotSent(Exception):
    """The request did not get through whole (no connection, refused, TLS, cut while sending):
    the server cannot have acted on it."""


class NoAnswer(Exception):
    """The request was sent but no complete status and headers came back before the deadline
    (cut, timed out, not HTTP): the server may have acted on it."""


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: Message
    body: bytes
    """What arrived of the body before the deadline, at most the limit: the status is the
    answer, the body only explains it."""


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float,
    limit: int,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """POST ``body`` to ``url`` (``http`` or ``https``), all of it over by ``deadline``
    (``time.monotonic()``); raises :class:`NotSent` or :class:`NoAnswer` with a one-line
    reason."""
    parts = urlsplit(url)
    connection = _connection(parts, deadline, context)
    try:
        try:
            connection.connect()
            connection.request("POST", _target(parts), body, dict(headers))
        except (OSError, http.client.HTTPException) as error:
            raise NotSent(_reason(error)) from None
        try:
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            raise NoAnswer(_reason(error)) from None
        with response:
            return Reply(response.status, response.reason, response.headers, _read(response, limit))
    finally:
        connection.close()


def _target(parts: SplitResult) -> str:
    return f"{parts.path or '/'}{'?' if parts.query else ''}{parts.query}"


def _connection(
    parts: SplitResult, deadline: float, context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    host, port = parts.hostname or "", parts.port
    if parts.scheme == "http":
        return _Connection(host, port, deadline=deadline)
    proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get("https")
    if proxy is None:
        return _TLSConnection(host, port, deadline=deadline, context=context)
    through = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        proxy_port = through.port or (443 if through.scheme == "https" else 80)
    except ValueError:
        raise NotSent(f"HTTPS_PROXY {mask_password(proxy)!r} is not a proxy URL") from None
    tunnel = _TLSConnection(through.hostname or "", proxy_port, deadline=deadline, context=context)
    tunnel.set_tunnel(host, port or 443, headers=_proxy_authorization(through))
    return tunnel


def _proxy_authorization(proxy: SplitResult) -> dict[str, str]:
    """Basic credentials for the proxy, when its URL has them (as urllib sends them)."""
    if proxy.username is None:
        return {}
    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode()}"}


class _Deadline:
    """A connection that gives each step only the time left before ``deadline``."""

    deadline: float
    sock: Any

    def _within(
        self, address: tuple[str, int], timeout: float | None, source: tuple[str, int] | None
    ) -> socket.socket:
        """``socket.create_connection`` (http.client's hook), the handshake after it then
        limited to what is left."""
        sock = socket.create_connection(address, _left(self.deadline), source)
        sock.settimeout(_left(self.deadline))
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _Connection(_Deadline, http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, *, deadline: float) -> None:
        super().__init__(host, port)
        self.deadline = deadline
        self._create_connection = self._within


class _TLSConnection(_Deadline, http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int | None, *, deadline: float, context: ssl.SSLContext | None
    ) -> None:
        super().__init__(host, port, context=context)
        self.deadline = deadline
        self._create_connection = self._within


class _DeadlineSocket:
    """The connected socket as http.client uses it (``sendall``, ``makefile``, ``close``),
    each call limited to the time left: a timeout per call alone never ends a reply that
    drips."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(_left(self._deadline))
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._file = sock.makefile("rb", buffering=0)  # keeps the socket open while reading
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_left(self._deadline))
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _read(response: http.client.HTTPResponse, limit: int) -> bytes:
    data = bytearray()
    try:
        while len(data) < limit and (chunk := response.read1(limit - len(data))):
            data += chunk
    except (OSError, http.client.HTTPException):
        pass  # what came is all the explanation there is
    return bytes(data)


def _reason(error: BaseException) -> str:
    """One line: ``timed out``, ``[Errno 111] Connection refused``, ``Remote end closed…``."""
    if isinstance(error, http.client.BadStatusLine) and not isinstance(error, OSError):
        return "the reply is not HTTP"
    return " ".join(str(error).split())[:300] or type(error).__name__
