"""User-facing problems: one line each, ``file:line:column: message``, reported all at once.

Part of the core (standard library only): the planner reports refused requests as findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DataPath = tuple[str | int, ...]
"""Keys and list indexes from a file's top down to one value: ``("users", "a@b.co", "license")``."""


@dataclass(frozen=True)
class Finding:
    """A problem known by its place in the data (file + key path), not yet by line and column:
    the checks and the planner work on data, and only the config loader re-reads a file to
    locate its findings (``reconciler.config.locate_findings``)."""

    file: str
    path: DataPath
    message: str
    at_key: bool = False
    """Point at the key of the last path element (e.g. the entry that lacks a key)."""


@dataclass(frozen=True, order=True)
class Problem:
    """A problem in the configuration, already located in its file (1-based line and column)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; carries every problem found, sorted."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(map(str, self.problems)))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[Problem]]]:
        """Pickled as its problems (a worker process composing emails raises it)."""
        return (ConfigError, (self.problems,))


class UserError(Exception):
    """A refusal or failure the user can act on (locked, stale, queued mail...): one clear line,
    exit code 1, never a traceback."""
