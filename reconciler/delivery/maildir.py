"""Delivery into a standard Maildir: the default, needing no mail server.

Written by hand rather than with :class:`mailbox.Maildir`, which neither fsyncs (an accepted
message must survive a crash, since it is then marked delivered and never written again) nor
lets us set the file mode without changing the process-wide umask. The result is the standard
layout that :class:`mailbox.Maildir` and mail clients read, with the local line ending (LF)
they expect: classic mutt shows a CRLF file's ``\r`` as ``^M`` after every header. The message
is otherwise byte for byte the one SMTP sends with CRLF.

Each message's file is named from its Message-ID, and a message whose file is already there (in
``new/``, or moved to ``cur/`` by a reader) is not written again: delivering twice leaves one
copy, so apply records these deliveries a batch at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import socket
import time
from pathlib import Path

from .base import ConnectionFailure, Pending, Transport
from .files import fsync_directory, make_private_dir, write_atomically

#: Distinguishes deliveries made by this process within the same microsecond.
_DELIVERIES = itertools.count()


class MaildirTransport(Transport):
    """Writes each message to ``tmp/`` then renames it into ``new/``; files 0600, dirs 0700."""

    idempotent = True

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.description = f"maildir:{self.path}"
        self._present: set[str] | None = None
        """The Message-ID digests of the messages in the Maildir before this run's first write
        (read then, once): what a killed run wrote. Those written since are not added, since a
        run writes each queued message at most once, so a rollout's memory stays flat."""

    def send(self, message: Pending, *, deadline: float | None = None) -> None:
        try:
            if self._present is None:
                for folder in (self.path, self.path / "tmp", self.path / "new", self.path / "cur"):
                    make_private_dir(folder)
                fsync_directory(self.path)
                self._present = {
                    found[1]
                    for folder in ("new", "cur")
                    for entry in os.scandir(self.path / folder)
                    if (found := _OURS.match(entry.name))
                }
            digest = _digest(message)
            if digest in self._present:
                return  # delivered before (a re-run after a crash): one copy
            name = _unique_name(digest)
            data = message.data.replace(b"\r\n", b"\n")  # the local line ending readers expect
            write_atomically(data, self.path / "tmp" / name, self.path / "new" / name)
        except OSError as error:
            raise ConnectionFailure(
                f"cannot write to {self.description}: {error.strerror or error}"
            ) from error


_OURS = re.compile(r"\d+\.M\d+P\d+Q\d+\.([0-9a-f]{40})\.")


def _digest(message: Pending) -> str:
    """What names the message in the Maildir whenever it is delivered: a digest of its
    Message-ID (any id is then a safe name), or of its bytes without one."""
    key = message.message_id.encode("utf-8", "surrogateescape") or message.data
    return hashlib.sha256(key).hexdigest()[:40]


def _unique_name(digest: str) -> str:
    """The conventional ``time.MmicrosecondsPpidQcounter`` name (as :mod:`mailbox` makes, so
    names sort in delivery order), then the message's digest, then the host."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_DELIVERIES)}.{digest}.{host}"
