"""Running the CLI in the test's own process, as faithfully as a process of its own would run it.

:func:`invoke` calls ``reconciler.cli.main`` inside click's :class:`~click.testing.CliRunner`
isolation (its own stdin, stdout and stderr, environment overrides), in the command's working
directory and umask, and reports what a fresh interpreter would have printed by itself: the
traceback of an uncaught exception, a warning, a log record no handler took (Python's "last
resort" handler) all go to the command's stderr, not to pytest. :func:`call_main` is the call
itself, shared with the real-process runner (:mod:`tests.helpers.processes`), so both modes run
exactly the same code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.patience import patience

#: Retry pauses of a few hundredths of a second, so failure tests take milliseconds.
TEST_ENV: dict[str, str] = {
    "RECONCILER_RETRY_BACKOFF": "0.02",
    "NO_COLOR": "1",
    "RECONCILER_OUTBOX_KEY": "dGVzdHMgb25seTogdGhlIHN1aXRlJ3Mgb3V0Ym94IGs=",
}
"""Every run's settings: a fast retry, no colour, and the outbox key a PostgreSQL state seals
queued emails with (as a deployment gives it; SQLite ignores it)."""
ENV_PREFIX = "RECONCILER_"

Env = Mapping[str, str | None]
"""Environment changes for a run: a value sets the variable, ``None`` removes it."""


@dataclass
class Result:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"reconciler {' '.join(self.argv)} -> exit {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def assert_clean_error(result: Result, *words: str) -> None:
    """Exit 1 without a traceback, and each of ``words`` in the output."""
    assert result.code == 1, str(result)
    assert "Traceback" not in result.output, str(result)
    for word in words:
        assert word in result.output, str(result)


def ci_commands(output: str) -> list[str]:
    """The lines of ``output`` a CI runner would act on: ``##vso[`` (Azure Pipelines) or ``##[``
    (both) anywhere in the line, ``::`` starting it after spaces (GitHub Actions)."""
    return [
        line
        for line in output.splitlines()
        if re.search(r"##(vso)?\[", line, re.IGNORECASE) or line.lstrip().startswith("::")
    ]


def environment(env: Env | None = None) -> dict[str, str]:
    """The environment of a run: the caller's without RECONCILER_* settings (a developer's own
    must not leak into a test), plus :data:`TEST_ENV` and ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    merged: dict[str, str | None] = {**base, **TEST_ENV, **(env or {})}
    return {k: v for k, v in merged.items() if v is not None}


def call_main(argv: Sequence[str], *, propagate: tuple[type[BaseException], ...] = ()) -> int:
    """``reconciler ARGV`` exactly as the console script runs it; returns the exit code. What
    the interpreter prints when a program ends (a ``sys.exit`` message, the traceback of an
    uncaught exception) goes to ``sys.stderr``; ``propagate`` exceptions are re-raised."""
    try:
        from reconciler.cli import main

        main(args=list(argv), prog_name="reconciler")
        return 0
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except propagate:
        raise
    except BaseException:  # uncaught: what Python itself prints, and exit 1
        traceback.print_exc()
        return 1


class _StillRunning(BaseException):
    """Raised into an in-process command that ran past its timeout."""


def invoke(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Env | None = None,
    umask: int = 0o022,
    timeout: float | None = 30.0,
) -> Result:
    """``reconciler ARGV`` in this process, with ``cwd`` as working directory, the umask, no
    terminal and an empty stdin, and the environment :func:`environment` gives a process;
    interrupted after ``timeout`` seconds of :func:`~tests.helpers.patience.patience`."""
    from click.testing import CliRunner

    argv = [str(a) for a in argv]
    timeout = patience(timeout) if timeout else None
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith(ENV_PREFIX)}
    overrides.update(TEST_ENV)
    overrides.update(env or {})
    with (
        _working_directory(cwd),
        _umask(umask),
        CliRunner().isolation(env=overrides) as (stdout, stderr, _),
        _reported_as_by_a_fresh_interpreter(),
    ):
        try:
            with _deadline(timeout):
                code = call_main(argv, propagate=(_StillRunning, KeyboardInterrupt))
        except _StillRunning:
            sys.stdout.flush()
            sys.stderr.flush()
            raise AssertionError(
                f"reconciler {' '.join(argv)} still running after {timeout} s:\n"
                f"{stdout.getvalue().decode(errors='replace')}"
                f"{stderr.getvalue().decode(errors='replace')}"
            ) from None
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = stdout.getvalue(), stderr.getvalue()
    return Result(argv, code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def _deadline(timeout: float | None) -> Iterator[None]:
    """Interrupt the command after ``timeout`` seconds (main thread only: SIGALRM). A command
    run inside another (a monkeypatch that runs one) keeps the outer deadline going."""
    if not timeout or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _StillRunning

    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


# The warning filters of an interpreter started without -W or PYTHONWARNINGS.
_FRESH_FILTERS: list[tuple[Any, type[Warning], str]] = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


class _LastResort(logging.StreamHandler):  # type: ignore[type-arg]
    """Python's handler of last resort (WARNING and up, the bare message, on the current
    ``sys.stderr``) for the records of the command's threads only: the test's servers run in
    threads of this process too, and their logs are no part of the command's output."""

    def __init__(self, foreign: set[int | None]) -> None:
        logging.Handler.__init__(self, logging.WARNING)
        self.addFilter(lambda record: record.thread not in foreign)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Always the current stderr."""


def _print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _reported_as_by_a_fresh_interpreter() -> Iterator[None]:
    """Warnings and unhandled log records go to stderr as in a new process (where nothing
    configured logging), instead of to pytest's capture."""
    root = logging.getLogger()
    handlers, level, last_resort = root.handlers[:], root.level, logging.lastResort
    foreign = {t.ident for t in threading.enumerate()} - {threading.get_ident()}
    root.handlers = []
    root.setLevel(logging.WARNING)
    logging.lastResort = _LastResort(foreign)
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in _FRESH_FILTERS:
                warnings.filterwarnings(action, category=category, module=module, append=True)
            warnings.showwarning = _print_warning
            yield
    finally:
        root.handlers = handlers
        root.setLevel(level)
        logging.lastResort = last_resort
