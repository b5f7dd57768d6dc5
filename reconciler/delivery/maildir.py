"""Delivery into a standard Maildir: the default, needing no mail server.

Written by hand rather than with :class:`mailbox.Maildir`, which neither fsyncs (an accepted
message must survive a crash, since it is then marked delivered and never written again) nor
lets us set the file mode without changing the process-wide umask. The result is the standard
layout that :class:`mailbox.Maildir` and mail clients read.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

from .base import ConnectionFailure, Pending, Transport
from .files import fsync_directory, make_private_dir, write_atomically

#: Distinguishes deliveries made by this process within the same microsecond.
_DELIVERIES = itertools.count()


class MaildirTransport(Transport):
    """Writes each message to ``tmp/`` then renames it into ``new/``; files 0600, dirs 0700."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.description = f"maildir:{self.path}"
        self._ready = False

    def send(self, message: Pending, *, deadline: float | None = None) -> None:
        try:
            if not self._ready:
                for folder in (self.path, self.path / "tmp", self.path / "new", self.path / "cur"):
                    make_private_dir(folder)
                fsync_directory(self.path)
                self._ready = True
            name = _unique_name()
            write_atomically(message.data, self.path / "tmp" / name, self.path / "new" / name)
        except OSError as error:
            raise ConnectionFailure(
                f"cannot write to {self.description}: {error.strerror or error}"
            ) from error


def _unique_name() -> str:
    """The conventional ``time.MmicrosecondsPpidQcounter.host`` name (as :mod:`mailbox` makes)."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_DELIVERIES)}.{host}"
