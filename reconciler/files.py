"""A file written in one step: a new file beside its name, renamed onto it once complete.

A reader (or a killed run) sees the old file or the new one, never half of one; and whatever was
at the name, a file or a symbolic link, is replaced, never written through: a link committed
in a pull request cannot send a write to the file it points at.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def written_in_one_step(path: Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path``'s new content into; renamed onto ``path``, with the permissions
    an ordinary new file would have, when the block ends without an exception (else removed)."""
    with tempfile.NamedTemporaryFile(
        "wb" if binary else "w",
        encoding=None if binary else "utf-8",
        dir=path.parent,
        prefix=f".{path.name}.",
        delete=False,
    ) as file:
        try:
            yield file
            os.chmod(file.name, 0o666 & ~_umask())
            file.flush()
            os.fsync(file.fileno())
            os.replace(file.name, path)
        except BaseException:
            os.unlink(file.name)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
