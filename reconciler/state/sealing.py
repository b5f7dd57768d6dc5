"""Queued bodies sealed with a key kept outside the database (``RECONCILER_OUTBOX_KEY``).

A PostgreSQL server writes every row to its write-ahead log, and from there to WAL archives,
replicas and point-in-time backups that outlive the outbox's erasing of a delivered body. What
reaches the server must therefore be useless without the pipeline's secret: each body is sealed
with AES-256-GCM before it is written and opened after it is read. The server, its logs and its
backups see ciphertext only; a PIN exists in clear only in the email.

A sealed body is bound to its row's Message-ID, sender and recipients: whoever can write to the
database but has no key cannot move it to another row or point it at another address, so a PIN
goes to its user or nowhere. (Such a writer can still queue a message of its own in clear, as
an older reconciler's queue is: sealing keeps PINs secret, it does not authenticate the outbox.)

``RECONCILER_OUTBOX_KEY`` holds one or more keys (``reconciler state new-key`` makes one),
separated by spaces or commas: the first seals, any of them opens, so a key is replaced by
putting the new one first and dropping the old one once the queue it sealed is delivered. A
sealed body names its key by fingerprint, so a missing key is named, never guessed at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.errors import UserError
from reconciler.state.base import SealBroken

ENV = "RECONCILER_OUTBOX_KEY"

MAGIC = b"\x00reconciler-sealed:1:"
"""Starts every sealed body. A NUL cannot start an RFC 5322 message, so a body queued before
sealing existed (plain MIME) is told apart without a flag of its own."""

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_FINGERPRINT_CHARS = 8
_HEADER = len(MAGIC) + _FINGERPRINT_CHARS + 1
_FINGERPRINT = re.compile(rb"[0-9a-f]{8}:")


def new_key() -> tuple[str, str]:
    """A fresh random key, as ``RECONCILER_OUTBOX_KEY`` takes it (URL-safe base64), and its
    fingerprint."""
    key = os.urandom(_KEY_BYTES)
    return base64.urlsafe_b64encode(key).decode("ascii"), _fingerprint(key)


def binding(message_id: str, sender: str, recipients: Sequence[str]) -> bytes:
    """What a sealed body is bound to: its row's Message-ID, sender and recipients."""
    return json.dumps([message_id, sender, list(recipients)]).encode("utf-8")


class OutboxKeys:
    """The keys of ``RECONCILER_OUTBOX_KEY``: seal with the first, open with whichever sealed."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one key")
        self._sealing = _fingerprint(keys[0])
        self._keys = {_fingerprint(k): AESGCM(k) for k in keys}

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OutboxKeys | None:
        """The keys the environment gives, or None when it gives none: unset, blank, or the text
        ``$(RECONCILER_OUTBOX_KEY)`` that Azure Pipelines passes for a variable nobody defined.

        Raises UserError, without echoing the value, when a key is not 32 bytes of URL-safe
        base64 (strictly: a quote or any other character around it is refused, not dropped)."""
        value = env.get(ENV, "")
        if value.strip() == f"$({ENV})":
            value = ""
        words = [w for w in re.split(r"[\s,]+", value) if w]
        if not words:
            return None
        keys = []
        for n, word in enumerate(words, 1):
            try:
                key = base64.b64decode(word + "=" * (-len(word) % 4), altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != _KEY_BYTES:
                raise UserError(
                    f"{ENV}: key {n} of {len(words)} is not a key made by "
                    "`reconciler state new-key` (32 bytes in URL-safe base64)"
                )
            keys.append(key)
        return cls(keys)

    @property
    def fingerprint(self) -> str:
        """The sealing key's fingerprint: what a sealed body and an error name it by."""
        return self._sealing

    def seal(self, bound: bytes, body: bytes) -> bytes:
        """``body`` sealed with the first key, bound to ``bound`` (:func:`binding`)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._sealing].encrypt(nonce, body, bound)
        return MAGIC + self._sealing.encode("ascii") + b":" + nonce + sealed

    def open(self, message_id: str, bound: bytes, body: bytes) -> bytes:
        """A sealed ``body`` in clear (SealBroken, one line, when its key is not among these,
        or it was cut, altered or moved to another row)."""
        fingerprint = _sealed_with(message_id, body)
        cipher = self._keys.get(fingerprint)
        if cipher is None:
            raise _missing(message_id, fingerprint, f"it holds {', '.join(self._keys)}")
        try:
            return cipher.decrypt(
                body[_HEADER : _HEADER + _NONCE_BYTES], body[_HEADER + _NONCE_BYTES :], bound
            )
        except (InvalidTag, ValueError):
            raise _altered(message_id, f"does not open with outbox key {fingerprint}") from None


def is_sealed(body: bytes) -> bool:
    return body.startswith(MAGIC)


def open_body(keys: OutboxKeys | None, message_id: str, bound: bytes, body: bytes) -> bytes:
    """A queued body in clear: as it is when it was queued before sealing existed, else opened
    with the key that sealed it."""
    if not is_sealed(body):
        return body
    if keys is None:
        raise _missing(message_id, _sealed_with(message_id, body), "it is not set")
    return keys.open(message_id, bound, body)


def _sealed_with(message_id: str, body: bytes) -> str:
    """The fingerprint a sealed body names, once it has the shape of one."""
    if len(body) < _HEADER + _NONCE_BYTES + _TAG_BYTES or not _FINGERPRINT.fullmatch(
        body[len(MAGIC) : _HEADER]
    ):
        raise _altered(message_id, "is not a whole sealed body")
    return body[len(MAGIC) : _HEADER - 1].decode("ascii")


def _missing(message_id: str, fingerprint: str, given: str) -> SealBroken:
    return SealBroken(
        f"queued email {message_id} was sealed with outbox key {fingerprint}, which {ENV} "
        f"does not hold ({given}): give that key too (the first one seals, any one opens)"
    )


def _altered(message_id: str, what: str) -> SealBroken:
    return SealBroken(
        f"queued email {message_id} {what}: it was cut or altered in the database, or "
        "belongs to another message"
    )


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"reconciler outbox key\x00" + key).hexdigest()[:_FINGERPRINT_CHARS]
