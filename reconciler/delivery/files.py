"""Private, crash-safe message files, and the transport that keeps suppressed messages.

When a tenant has ``automatically_send_emails_to_users: false`` nothing may be emailed, yet the
users still need their PINs: the operator gets each message as an ``.eml`` file that only they can
read, and informs the users some other way.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from .base import ConnectionFailure, Pending, SetupFailure, Transport

#: Characters kept as they are in a file name made from a Message-ID; others become ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
_MAX_STEM = 100


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with the leaf readable by its owner only.

    An existing directory keeps its mode: the operator may have chosen it deliberately, and the
    files written into it are private (0600) in any case.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_atomically(data: bytes, tmp: Path, target: Path) -> None:
    """Write ``data`` to ``tmp`` (mode 0600), fsync it, rename it to ``target``, fsync the
    directory: a reader never sees a partial file, and once this returns the file survives a
    crash — which is what allows the caller to mark the message delivered."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # exactly 0600, whatever the umask
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def fsync_directory(directory: Path) -> None:
    """Make the names created in ``directory`` durable (a rename is only durable after this)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SuppressedFiles(Transport):
    """Writes each message to ``<directory>/<name from its Message-ID>.eml`` (mode 0600).

    The name depends only on the message id, so writing the same message again (a re-run after a
    crash) replaces the file instead of adding a second copy.
    """

    idempotent = True

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.description = f"files in {self.directory}"

    def path_for(self, message: Pending) -> Path:
        """Where ``message`` is (or will be) kept, so the caller can tell the operator."""
        return self.directory / f"{_file_stem(message)}.eml"

    def send(self, message: Pending, *, deadline: float | None = None) -> None:
        target = self.path_for(message)
        tmp = self.directory / f".{target.name}.{secrets.token_hex(8)}.tmp"
        try:
            make_private_dir(self.directory)
            if self.directory.is_symlink() or self.directory.parent.is_symlink():
                raise SetupFailure(
                    f"{self.directory} is or is under a symbolic link: suppressed "
                    "messages are only written into a real folder"
                )
            write_atomically(message.data, tmp, target)
        except OSError as error:
            raise ConnectionFailure(f"cannot write {target}: {error.strerror or error}") from error


def _file_stem(message: Pending) -> str:
    """A file name stem that is safe (no ``/``, not hidden) and distinct per Message-ID.

    A readable id such as ``<abc.123@reconciler>`` is used as it is (``abc.123@reconciler``);
    one that had to be altered gets a hash of the original appended, so two ids never collide.
    A message without an id is named by a hash of its content, which keeps rewrites idempotent.
    """
    ident = message.message_id.strip().removeprefix("<").removesuffix(">")
    if not ident:
        return "message-" + hashlib.sha256(message.data).hexdigest()[:16]
    stem = _UNSAFE.sub("_", ident)
    if stem != ident or stem.startswith(".") or len(stem) > _MAX_STEM:
        digest = hashlib.sha256(message.message_id.encode("utf-8", "surrogateescape")).hexdigest()
        stem = f"{stem.lstrip('.')[:_MAX_STEM] or 'message'}-{digest[:12]}"
    return stem
