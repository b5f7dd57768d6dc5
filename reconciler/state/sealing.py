"""Queued bodies sealed with a key kept outside the database (``RECONCILER_OUTBOX_KEY``).

A PostgreSQL server writes every row to its write-ahead log, and from there to WAL archives,
replicas and point-in-time backups that outlive the outbox's erasing of a delivered body. What
reaches the server must therefore be useless without the pipeline's secret: each body is sealed
with AES-256-GCM before it is written and opened after it is read, bound to its Message-ID (a
sealed body cannot be moved to another row). The server, its logs and its backups see
ciphertext only; a PIN exists in clear only in the email.

``RECONCILER_OUTBOX_KEY`` holds one or more keys (``reconciler state new-key`` makes one),
separated by spaces or commas: the first seals, any of them opens, so a key is replaced by
putting the new one first and dropping the old one once the queue it sealed is delivered. A
sealed body names its key by fingerprint, so a missing key is named, never guessed at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.errors import UserError

ENV = "RECONCILER_OUTBOX_KEY"

MAGIC = b"\x00reconciler-sealed:1:"
"""Starts every sealed body. A NUL cannot start an RFC 5322 message, so a body queued before
sealing existed (plain MIME) is told apart without a flag of its own."""

_KEY_BYTES = 32
_NONCE_BYTES = 12
_FINGERPRINT_CHARS = 8


def new_key() -> tuple[str, str]:
    """A fresh random key, as ``RECONCILER_OUTBOX_KEY`` takes it (URL-safe base64), and its
    fingerprint."""
    key = os.urandom(_KEY_BYTES)
    return base64.urlsafe_b64encode(key).decode("ascii"), _fingerprint(key)


class SealBroken(UserError):
    """A sealed body that cannot be opened: its key is not given, or it was altered."""


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

        Raises UserError, without echoing the value, when a key is not 32 bytes of base64."""
        value = env.get(ENV, "")
        if value.strip() == f"$({ENV})":
            value = ""
        words = [w for w in re.split(r"[\s,]+", value) if w]
        if not words:
            return None
        keys = []
        for n, word in enumerate(words, 1):
            try:
                key = base64.urlsafe_b64decode(word + "=" * (-len(word) % 4))
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

    def seal(self, message_id: str, body: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._sealing].encrypt(nonce, body, message_id.encode("utf-8"))
        return MAGIC + self._sealing.encode("ascii") + b":" + nonce + sealed

    def open(self, message_id: str, body: bytes) -> bytes:
        """A sealed ``body`` in clear (SealBroken, one line, when its key is not among these
        or it was altered)."""
        fingerprint = _sealed_with(body)
        cipher = self._keys.get(fingerprint)
        if cipher is None:
            raise _missing(message_id, fingerprint, f"it holds {', '.join(self._keys)}")
        start = len(MAGIC) + _FINGERPRINT_CHARS + 1
        try:
            return cipher.decrypt(
                body[start : start + _NONCE_BYTES],
                body[start + _NONCE_BYTES :],
                message_id.encode("utf-8"),
            )
        except InvalidTag:
            raise SealBroken(
                f"queued email {message_id} does not open with outbox key {fingerprint}: "
                "it was altered in the database, or belongs to another message"
            ) from None


def is_sealed(body: bytes) -> bool:
    return body.startswith(MAGIC)


def open_body(keys: OutboxKeys | None, message_id: str, body: bytes) -> bytes:
    """A queued body in clear: as it is when it was queued before sealing existed, else opened
    with the key that sealed it."""
    if not is_sealed(body):
        return body
    if keys is None:
        raise _missing(message_id, _sealed_with(body), "it is not set")
    return keys.open(message_id, body)


def _sealed_with(body: bytes) -> str:
    return body[len(MAGIC) : len(MAGIC) + _FINGERPRINT_CHARS].decode("ascii", "replace")


def _missing(message_id: str, fingerprint: str, given: str) -> SealBroken:
    return SealBroken(
        f"queued email {message_id} was sealed with outbox key {fingerprint}, which {ENV} "
        f"does not hold ({given}): give that key too (the first one seals, any one opens)"
    )


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"reconciler outbox key\x00" + key).hexdigest()[:_FINGERPRINT_CHARS]
