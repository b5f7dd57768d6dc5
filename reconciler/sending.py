"""Delivery set up from the operator's options: the ``--mail`` transport, the default sender it
needs, and where suppressed messages are kept.

``apply``, ``test-email`` and ``preview`` share these so that each derives the same From and the
same refusals from the same options. Every failure is a one-line :class:`UserError` naming the
option (never a password). It sits beside the flows, not in ``delivery/``: the transports need
neither the email templates nor the state.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.delivery import Transport, graph_sender, open_transport
from reconciler.delivery.smtp import SCHEMES as SMTP_SCHEMES
from reconciler.emails.compose import Sender, parse_default_sender
from reconciler.errors import UserError
from reconciler.state import local_dir, tenant_key

MAILDIR_DEFAULT_FROM = "noreply@localhost"
"""The default sender when none is given and the transport needs no real one (a Maildir)."""


def default_sender(mail_url: str, value: str | None, *, sending: bool = True) -> Sender:
    """The deployment's default From: ``--default-from``; without it, the mailbox a ``graph://``
    URL sends as, else ``noreply@localhost``. Sending over SMTP requires ``--default-from`` (a
    relay would refuse or mislabel a made-up address); a preview (``sending=False``) sends
    nothing, so it falls back instead."""
    if value is None:
        scheme = mail_url.partition(":")[0].lower()
        if sending and scheme in SMTP_SCHEMES.values():
            raise UserError(
                "--default-from (or RECONCILER_DEFAULT_FROM) is required for SMTP delivery"
            )
        value = MAILDIR_DEFAULT_FROM
        if scheme == "graph":  # Graph sends as that mailbox
            try:
                value = graph_sender(mail_url)
            except ValueError as exc:
                raise UserError(f"--mail: {exc}") from None
    try:
        return parse_default_sender(value)
    except ValueError as exc:
        raise UserError(f"--default-from {value!r}: {exc}") from None


def mail_transport(mail_url: str, default_from: str) -> Transport:
    """The ``--mail`` transport; a bad URL is a one-line refusal (never showing a password)."""
    try:
        return open_transport(mail_url, default_from=default_from)
    except ValueError as exc:
        raise UserError(f"--mail: {exc}") from None


def suppressed_dir(state: str, tenant: str) -> Path:
    """Where suppressed messages are kept for the operator (see ``state.local_dir``)."""
    return local_dir(state) / "suppressed" / tenant_key(tenant)
