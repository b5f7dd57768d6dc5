"""Running the CLI in real processes: for what only a process has — being killed with SIGKILL, a
lock held against another process, a terminal.

:func:`spawn` and :func:`run` start ``reconciler`` in a *separate process* forked from a
pre-warmed, single-threaded server process that has ``reconciler.cli`` imported: each run has
its own pid, file descriptors, environment, exit code and output, can be killed with SIGKILL,
and starts in milliseconds instead of paying the interpreter start-up and the imports every
time. Its stdin, stdout and stderr can be a :class:`Terminal`. :func:`python_m` runs ``python
-m reconciler`` itself, for what must go through the interpreter's real start-up.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from tests.helpers.cli import Env, Result, call_main, environment
from tests.helpers.patience import patience

ROOT = Path(__file__).resolve().parents[2]


def _run_child(request: dict[str, Any]) -> None:
    """In the forked process: the CLI exactly as the console script runs it; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in (
            (0, request["stdin"], os.O_RDWR),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        code = call_main(request["argv"])
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


_WARM_MODULES = (
    "reconciler.cli",
    "reconciler.apply",
    "reconciler.emails",
    "deepdiff",
    "reconciler.state.sqlite",
    "reconciler.state.postgres",
    "reconciler.delivery.smtp",
)


def _zygote_main() -> None:
    """A pre-warmed process that forks one child per request (JSON lines on stdin) and reports
    ``started ID PID`` and ``exited PID CODE`` (negative: killed by that signal) on stdout.
    It has a single thread, so forking it is safe (the test process has server threads)."""
    import importlib
    import json
    import selectors

    # Warm the imports children need, including those the CLI makes lazily; a broken import
    # is reported by each child that needs the module.
    for module in _WARM_MODULES:
        with contextlib.suppress(BaseException):
            importlib.import_module(module)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    pending = b""
    children = 0

    def report(line: str) -> None:
        os.write(1, (line + "\n").encode())

    while True:
        if selector.select(timeout=0.002 if children else None):
            chunk = os.read(0, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    _run_child(request)
                children += 1
                report(f"started {request['id']} {pid}")
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children -= 1
            report(f"exited {pid} {os.waitstatus_to_exitcode(status)}")


class _Zygote:
    """The test process's side of :func:`_zygote_main`."""

    def __init__(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.helpers.processes import _zygote_main; _zygote_main()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        self._changed = threading.Condition()
        self._pids: dict[int, int] = {}
        self._exits: dict[int, int] = {}
        self._ids = iter(range(1, 1 << 62))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event, key, value = line.decode().split()
            with self._changed:
                (self._pids if event == "started" else self._exits)[int(key)] = int(value)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def start(self, request: dict[str, Any]) -> int:
        import json

        assert self.process.stdin is not None
        with self._changed:
            ident = request["id"] = next(self._ids)
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            if not self._changed.wait_for(
                lambda: ident in self._pids or self.process.poll() is not None, patience(30)
            ):
                raise AssertionError("the CLI process did not start")
            assert ident in self._pids, "the pre-warmed CLI server died"
            return self._pids.pop(ident)

    def exit_code(self, pid: int, timeout: float) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits, timeout)
            return self._exits.get(pid)


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _server() -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.process.poll() is not None:
            _zygote = _Zygote()
        return _zygote


class Running:
    """A CLI process started by :func:`spawn`."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: Env | None,
        stdin: str = os.devnull,
        stdout: str | None = None,
        stderr: str | None = None,
        umask: int = 0o022,
    ):
        self.argv = argv
        self._dir = tempfile.mkdtemp(prefix="reconciler-run-")
        self._out = stdout or os.path.join(self._dir, "stdout")
        self._err = stderr or os.path.join(self._dir, "stderr")
        self._captured = (stdout is None, stderr is None)
        self.started = time.monotonic()
        self._server = _server()
        self.pid = self._server.start(
            {
                "argv": argv,
                "cwd": str(cwd),
                "env": environment(env),
                "stdin": stdin,
                "stdout": self._out,
                "stderr": self._err,
                "umask": umask,
            }
        )
        self.code: int | None = None

    def alive(self) -> bool:
        return self.code is None and self._server.exit_code(self.pid, 0) is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no finally blocks, no flushing — a crash."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 30.0) -> Result:
        """The process's result; stdout and stderr are empty where they were a terminal.
        Killed after ``timeout`` seconds of :func:`~tests.helpers.patience.patience`."""
        return self._wait(patience(timeout))

    def _wait(self, timeout: float) -> Result:
        code = self._server.exit_code(self.pid, timeout)
        if code is None:
            os.kill(self.pid, signal.SIGKILL)
            self._server.exit_code(self.pid, 5)
            raise AssertionError(
                f"reconciler {' '.join(self.argv)} still running after "
                f"{timeout} s:\n{self._read(0)}{self._read(1)}"
            )
        self.code = code
        result = Result(self.argv, code, self._read(0), self._read(1))
        shutil.rmtree(self._dir, ignore_errors=True)
        return result

    def _read(self, stream: int) -> str:
        if not self._captured[stream]:
            return ""
        try:
            return Path((self._out, self._err)[stream]).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""


def spawn(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Env | None = None,
    stdin: str = os.devnull,
    stdout: str | None = None,
    stderr: str | None = None,
    umask: int = 0o022,
) -> Running:
    """Start ``reconciler ARGS`` in a new process. ``stdin`` is a file to open as its standard
    input (/dev/null: no terminal; a :class:`Terminal`'s ``path``: a terminal); ``stdout`` and
    ``stderr`` likewise (default: captured into the result)."""
    return Running([str(a) for a in args], cwd, env, stdin, stdout, stderr, umask)


def run(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Env | None = None,
    timeout: float = 30.0,
    umask: int = 0o022,
    terminals: Collection[str] = (),
) -> Result:
    """``reconciler ARGS`` in a new process (umask ``umask``), to completion. ``terminals``
    names the streams ("stdout", "stderr") that are each a terminal of their own: the result
    holds what the terminal showed (line ends as ``\\n``)."""
    unknown = set(terminals) - {"stdout", "stderr"}
    assert not unknown, f"no terminal for {unknown}"
    if not terminals:
        return spawn(args, cwd=cwd, env=env, umask=umask).wait(timeout)
    ttys = {name: Terminal() for name in terminals}
    try:
        running = spawn(
            args,
            cwd=cwd,
            env=env,
            umask=umask,
            stdout=ttys["stdout"].path if "stdout" in ttys else None,
            stderr=ttys["stderr"].path if "stderr" in ttys else None,
        )
        deadline = time.monotonic() + patience(timeout)
        while running.alive() and time.monotonic() < deadline:
            Terminal.read_any(list(ttys.values()), 0.05)
        result = running._wait(max(0.0, deadline - time.monotonic()))
        for tty in ttys.values():
            tty.drain()
        shown = {name: tty.text for name, tty in ttys.items()}
        return Result(
            result.argv,
            result.code,
            shown.get("stdout", result.stdout),
            shown.get("stderr", result.stderr),
        )
    finally:
        for tty in ttys.values():
            tty.close()


def python_m(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Env | None = None,
    wrapper: Sequence[str] = (),
    timeout: float = 60.0,
) -> Result:
    """``python -m reconciler ARGS`` through the interpreter's real start-up (``wrapper``: a
    command that runs it, such as ``setpriv ... --``)."""
    argv = [str(a) for a in args]
    done = subprocess.run(
        [*wrapper, sys.executable, "-m", "reconciler", *argv],
        cwd=cwd,
        env=environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=patience(timeout),
        check=False,
    )
    return Result(
        argv,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


class Terminal:
    """A pseudo-terminal for a CLI process: the process opens ``path`` (as stdin, stdout or
    stderr); the test types into it and reads what it shows."""

    def __init__(self) -> None:
        self.controller, self._replica = pty.openpty()
        self.path = os.ttyname(self._replica)
        self.output = bytearray()

    @property
    def text(self) -> str:
        return bytes(self.output).decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, text: str) -> None:
        os.write(self.controller, text.encode())

    def _read(self) -> bytes:
        try:
            return os.read(self.controller, 65536)
        except OSError:  # EIO: nothing has the terminal open any more
            return b""

    @staticmethod
    def read_any(terminals: list[Terminal], timeout: float) -> bool:
        """Read what any of ``terminals`` shows within ``timeout`` seconds; False if nothing."""
        by_fd = {t.controller: t for t in terminals}
        ready, _, _ = select.select(list(by_fd), [], [], timeout)
        got = False
        for fd in ready:
            chunk = by_fd[fd]._read()
            by_fd[fd].output += chunk
            got = got or bool(chunk)
        return got

    def expect(self, text: str, timeout: float = 60.0) -> None:
        """Read until the terminal has shown ``text`` (``timeout``: seconds of patience)."""
        deadline = time.monotonic() + patience(timeout)
        while text.encode() not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.read_any([self], remaining):
                raise AssertionError(f"no {text!r} on the terminal; it shows: {self.text}")

    def drain(self) -> None:
        """Read what is left once the process has ended."""
        while self.read_any([self], 0.2):
            pass

    def close(self) -> None:
        for fd in (self._replica, self.controller):
            with contextlib.suppress(OSError):
                os.close(fd)
