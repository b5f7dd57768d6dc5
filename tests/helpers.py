"""Shared test helpers: write tenant folders, run the real CLI in real processes, read what it
delivered (Maildir or SMTP), find the PINs in it, and a loopback SMTP server that can hold a
message in flight.

Running the CLI: :func:`run` / :func:`spawn` start ``reconciler`` in a *separate process*
forked from a pre-warmed, single-threaded server process that has ``reconciler.cli`` imported:
each run has its own pid, file descriptors, environment, exit code and output, can be killed
with SIGKILL, and starts in milliseconds instead of paying the interpreter start-up and the
imports every time. :func:`run_exec` runs ``python -m reconciler`` itself, for what must go
through the real entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import functools
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

# --------------------------------------------------------------------------------------------
# Tenant folders
# --------------------------------------------------------------------------------------------

TOLL = "+14255550100"
TOLL_2 = "+12065550123"
TOLL_FREE = "+18005550199"
MEETING_UPDATE_TOOL_URL = "https://aka.ms/meetingupdatetool"


def tenant_doc(*, locale: str = "en", pin_length: int = 5, send: bool = True,
               override: tuple[str, str] | None = None, unique_ids: bool = False,
               **settings: Any) -> dict[str, Any]:
    """A ``tenant.yaml`` document: a bridge with two toll numbers and one toll-free number.

    ``override`` is ``(display name, address)`` for ``send_email_from_override: true``.
    """
    doc_settings: dict[str, Any] = {
        "automatically_send_emails_to_users": send,
        "pin_length": pin_length,
        "use_unique_conference_ids": unique_ids,
        **settings,
    }
    if override is not None:
        doc_settings.update(send_email_from_override=True,
                            send_email_from_display_name=override[0],
                            send_email_from_address=override[1])
    return {
        "settings": doc_settings,
        "bridge": {
            "numbers": [
                {"number": TOLL, "type": "toll", "location": "Redmond, WA"},
                {"number": TOLL_2, "type": "toll", "location": "Seattle, WA"},
                {"number": TOLL_FREE, "type": "toll_free", "location": "United States"},
            ],
            "default_number": TOLL,
        },
        "email": {"locale": locale, "meeting_update_tool_url": MEETING_UPDATE_TOOL_URL},
    }


def user_doc(conference_id: str | None, *, license: bool = True, provider: str = "Microsoft",
             **fields: Any) -> dict[str, Any]:
    """One user's mapping; ``None`` values are left out (the key is then absent)."""
    doc: dict[str, Any] = {"license": license, "provider": provider,
                           "conference_id": conference_id, **fields}
    return {key: value for key, value in doc.items() if value is not None}


def enabled_users(count: int, *, domain: str = "contoso.com", start: int = 0
                  ) -> dict[str, dict[str, Any]]:
    """``count`` enabled users ``u000@domain``... with distinct conference IDs."""
    return {f"u{i:03d}@{domain}": user_doc(f"{7000000 + i}", display_name=f"User {i:03d}")
            for i in range(start, start + count)}


def _yaml_text(document: Mapping[str, Any] | str) -> str:
    if isinstance(document, str):
        return document
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


def write_tenant(config: Path, name: str, tenant: Mapping[str, Any] | str,
                 users: Mapping[str, Any] | str | None = None, *,
                 user_files: Mapping[str, Mapping[str, Any] | str] | None = None) -> Path:
    """(Re)write ``config/<name>/``: ``tenant.yaml``, ``users.yaml`` (``users`` is the mapping of
    users, or YAML text of the whole file) and ``users/<file>`` for each of ``user_files`` (a
    mapping of users, or YAML text). Files of an earlier call that are not given again are
    removed, so the folder holds exactly what this call describes."""
    folder = config / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "tenant.yaml").write_text(_yaml_text(tenant), encoding="utf-8")
    if users is not None:
        text = users if isinstance(users, str) else _yaml_text({"users": dict(users)})
        (folder / "users.yaml").write_text(text, encoding="utf-8")
    for relative, content in (user_files or {}).items():
        path = folder / "users" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else _yaml_text({"users": dict(content)})
        path.write_text(text, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------------------------

#: Retry pauses of a few hundredths of a second, so failure tests take milliseconds.
TEST_ENV = {"RECONCILER_RETRY_BACKOFF": "0.02", "NO_COLOR": "1"}
_ENV_PREFIX = "RECONCILER_"


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
        return (f"reconciler {' '.join(self.argv)} -> exit {self.code}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's environment without RECONCILER_* settings (a developer's own must not leak
    into a test), plus the test defaults and ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIX)}
    return {**base, **TEST_ENV, **(env or {})}


def _run_child(request: dict[str, Any]) -> None:
    """In the forked process: the CLI exactly as the console script runs it; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, request["stdin"], os.O_RDWR),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        try:
            from reconciler.cli import main

            main(args=request["argv"], prog_name="reconciler")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        except BaseException:  # uncaught: what Python itself prints, and exit 1
            import traceback

            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


_WARM_MODULES = ("reconciler.cli", "reconciler.apply", "reconciler.emails", "deepdiff",
                 "reconciler.state.sqlite", "reconciler.state.postgres",
                 "reconciler.delivery.smtp")


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
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.helpers import _zygote_main; _zygote_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env)
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
            if not self._changed.wait_for(lambda: ident in self._pids
                                          or self.process.poll() is not None, 30):
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

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str] | None,
                 stdin: str = os.devnull, umask: int = 0o022):
        self.argv = argv
        self._dir = tempfile.mkdtemp(prefix="reconciler-run-")
        self._out = os.path.join(self._dir, "stdout")
        self._err = os.path.join(self._dir, "stderr")
        self.started = time.monotonic()
        self._server = _server()
        self.pid = self._server.start({"argv": argv, "cwd": str(cwd), "env": _environment(env),
                                       "stdin": stdin, "stdout": self._out,
                                       "stderr": self._err, "umask": umask})
        self.code: int | None = None

    def alive(self) -> bool:
        return self.code is None and self._server.exit_code(self.pid, 0) is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no finally blocks, no flushing — a crash."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 30.0) -> Result:
        code = self._server.exit_code(self.pid, timeout)
        if code is None:
            os.kill(self.pid, signal.SIGKILL)
            self._server.exit_code(self.pid, 5)
            raise AssertionError(f"reconciler {' '.join(self.argv)} still running after "
                                 f"{timeout} s:\n{self._read(self._out)}{self._read(self._err)}")
        self.code = code
        result = Result(self.argv, code, self._read(self._out), self._read(self._err))
        shutil.rmtree(self._dir, ignore_errors=True)
        return result

    @staticmethod
    def _read(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""


def spawn(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
          stdin: str = os.devnull, umask: int = 0o022) -> Running:
    """Start ``reconciler ARGS`` in a new process; ``stdin`` is a file to open as its standard
    input (/dev/null: no terminal; a pty's path: a terminal)."""
    return Running([str(a) for a in args], cwd, env, stdin, umask)


def run(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
        timeout: float = 30.0, umask: int = 0o022) -> Result:
    """``reconciler ARGS`` in a new process (umask ``umask``), to completion."""
    return spawn(args, cwd=cwd, env=env, umask=umask).wait(timeout)


def run_exec(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
             stdin: Any = subprocess.DEVNULL, timeout: float = 60.0) -> Result:
    """``python -m reconciler ARGS`` through the interpreter's real start-up."""
    argv = [str(a) for a in args]
    done = subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=cwd,
                          env=_environment(env), stdin=stdin, capture_output=True,
                          timeout=timeout, check=False)
    return Result(argv, done.returncode, done.stdout.decode("utf-8", "replace"),
                  done.stderr.decode("utf-8", "replace"))


@dataclass
class Workspace:
    """One test's configuration folder, state location and Maildir, and the CLI bound to them."""

    root: Path
    state: str
    mail: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config.mkdir(parents=True, exist_ok=True)
        if "://" not in self.state:  # an SQLite state: its folder exists, as reconciler requires
            Path(self.state).parent.mkdir(parents=True, exist_ok=True)
        if not self.mail:
            self.mail = f"maildir:{self.maildir}"

    @property
    def config(self) -> Path:
        return self.root / "tenants"

    @property
    def maildir(self) -> Path:
        return self.root / "mail"

    def args(self, command: Sequence[str], *, mail: str | None = None) -> list[str]:
        return [*command, "--config", str(self.config), "--state", self.state,
                "--mail", mail or self.mail]

    def run(self, *command: str, mail: str | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 30.0) -> Result:
        return run(self.args(command, mail=mail), cwd=self.root, env={**self.env, **(env or {})},
                   timeout=timeout)

    def spawn(self, *command: str, mail: str | None = None,
              env: Mapping[str, str] | None = None) -> Running:
        return spawn(self.args(command, mail=mail), cwd=self.root,
                     env={**self.env, **(env or {})})

    def apply(self, *extra: str, mail: str | None = None, expect: int | None = 0,
              env: Mapping[str, str] | None = None) -> Result:
        """``apply --auto-approve``; checks the exit code unless ``expect`` is None."""
        result = self.run("apply", "--auto-approve", *extra, mail=mail, env=env)
        if expect is not None:
            assert result.code == expect, str(result)
        return result

    def snapshot(self) -> dict[str, bytes]:
        """Every file of an SQLite state folder and of the Maildir: what a refused command must
        leave byte for byte as it was."""
        folder = Path(self.state).parent if "://" not in self.state else None
        files = [*(sorted(folder.rglob("*")) if folder else []), *sorted(self.maildir.rglob("*"))]
        return {os.fspath(p): p.read_bytes() for p in files if p.is_file()}

    def state_show(self) -> dict[str, Any]:
        import json

        result = self.run("state", "show")
        assert result.code == 0, str(result)
        return json.loads(result.stdout)

    def tenant_state(self, name: str) -> dict[str, Any] | None:
        return next((t for t in self.state_show()["tenants"] if t["name"] == name), None)

    def history(self) -> list[dict[str, Any]]:
        import json

        result = self.run("history", "--format", "json")
        assert result.code == 0, str(result)
        return json.loads(result.stdout)

    def plan_json(self) -> dict[str, Any]:
        import json

        result = self.run("plan", "--format", "json")
        assert result.code == 0, str(result)
        return json.loads(result.stdout)

    def mails(self) -> list[Mail]:
        return read_maildir(self.maildir)


def state_file(state_location: str) -> Path | None:
    """The SQLite file behind ``--state``, or None when the state is a database URL."""
    return None if "://" in state_location else Path(state_location)


# --------------------------------------------------------------------------------------------
# Reading what was delivered
# --------------------------------------------------------------------------------------------

# "PIN: 12345", "New PIN: 12345", "Code confidentiel (PIN) : 12345" (French puts a no-break
# space before the colon).
_PIN_LINE = re.compile(r"PIN\)?[ \u00a0\u202f]*:[ \u00a0\u202f]*(\d+)[ \t\r]*$", re.MULTILINE)


@dataclass(eq=False)
class Mail:
    """A delivered message, parsed with the standard library (``email.policy.default``); what
    is read from it is computed once."""

    message: EmailMessage
    raw: bytes
    path: Path | None = None

    @functools.cached_property
    def type(self) -> str:
        return str(self.message["X-Reconciler-Email-Type"])

    @functools.cached_property
    def tenant(self) -> str:
        return str(self.message["X-Reconciler-Tenant"])

    @functools.cached_property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @functools.cached_property
    def to(self) -> str:
        """The ``To`` address (lower-case), without display name."""
        addresses = self.message["To"].addresses
        assert len(addresses) == 1, self.message["To"]
        return addresses[0].addr_spec.lower()

    @functools.cached_property
    def sender(self) -> tuple[str, str]:
        """``(display name, address)`` of ``From``."""
        addresses = self.message["From"].addresses
        assert len(addresses) == 1, self.message["From"]
        return addresses[0].display_name, addresses[0].addr_spec

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None and body.get_content_subtype() == subtype, self.message
        return str(body.get_content()).replace("\r\n", "\n")

    @functools.cached_property
    def text(self) -> str:
        return self.part("plain")

    @functools.cached_property
    def html(self) -> str:
        return self.part("html")

    @functools.cached_property
    def pins(self) -> list[str]:
        """Every PIN line of the plain-text body."""
        return _PIN_LINE.findall(self.text)

    def contains(self, needle: str) -> bool:
        """``needle`` in the decoded text or HTML body (spaces and dashes of phone numbers as
        the templates format them are ignored)."""
        return any(_SQUEEZE.sub("", needle) in body for body in self._squeezed)

    @functools.cached_property
    def _squeezed(self) -> tuple[str, str]:
        return _SQUEEZE.sub("", self.text), _SQUEEZE.sub("", self.html)


class _VisibleText(HTMLParser):
    _HIDDEN = frozenset({"head", "title", "style", "script"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in self._HIDDEN

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in self._HIDDEN

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.chunks.append(data)


def visible_text(html: str) -> str:
    """The text a reader sees in an HTML body: tags dropped (a phone number split into one
    ``<span>`` per digit group reads whole again), entities decoded, ``<head>`` left out."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return "".join(parser.chunks)


def parse_mail(raw: bytes, path: Path | None = None) -> Mail:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return Mail(message, raw, path)


_SQUEEZE = re.compile(r"[ \-\u00a0\u202f]")
_parsed: dict[Path, Mail] = {}
_MAILDIR_NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.")


def read_maildir(path: Path) -> list[Mail]:
    """Every message in the Maildir (read with :class:`mailbox.Maildir`), in delivery order
    (the conventional ``time.MmicrosecondsPpidQcounter`` file names order them)."""
    import mailbox

    if not path.exists():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    found = []
    for key in box.iterkeys():
        match = _MAILDIR_NAME.match(key)
        assert match, f"unconventional Maildir file name {key!r}"
        order = (int(match[1]), int(match[2]), int(match[3]), int(match[4]))
        file = path / ("new" if (path / "new" / key).exists() else "cur") / key
        if file not in _parsed:  # a delivered message file never changes
            _parsed[file] = parse_mail(box.get_bytes(key), file)
        found.append((order, _parsed[file]))
    return [mail for _, mail in sorted(found, key=lambda pair: pair[0])]


def is_trivial_pin(pin: str) -> bool:
    """All one digit, or a straight ascending/descending run (judged independently of the code
    under test)."""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    return len(set(pin)) == 1 or steps in ({1}, {-1})


def sequence(mails: Sequence[Mail]) -> list[tuple[str, str]]:
    """``(recipient, type)`` of each message, in order."""
    return [(m.to, m.type) for m in mails]


def copies_by_message_id(mails: Sequence[Mail]) -> Counter[str]:
    """How many times each Message-ID arrived: every value 1 means nothing was sent twice."""
    return Counter(str(m.message["Message-ID"]) for m in mails)


def acme(tmp_path: Path, state: str, users: int, mail: str = "") -> Workspace:
    """A workspace with one tenant ``acme`` of ``users`` enabled users (not applied yet)."""
    ws = Workspace(tmp_path, state, mail=mail)
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(users, domain="acme.com"))
    return ws


# --------------------------------------------------------------------------------------------
# A loopback SMTP server that can hold one message in flight
# --------------------------------------------------------------------------------------------


class GateSMTPServer:
    """A real aiosmtpd server on 127.0.0.1 whose DATA reply can be held, to catch a client in
    the middle of a delivery.

    ``hold(n, accepted=True)``: the ``n``-th DATA (0-based, counted over the server's life) is
    recorded as received and then its ``250`` reply is withheld until :meth:`release` — the
    message is in flight: the server has it, the client doesn't know. With ``accepted=False``
    the message is not recorded and, once released, refused with a 421. ``delay`` seconds are
    spent on every other message, half before taking it and half before replying (a slow
    server: a client killed at a random instant is as likely to be caught before the server
    has the message as after).
    """

    def __init__(self, delay: float = 0.0):
        from aiosmtpd.controller import Controller

        self.received: list[bytes] = []
        self._parsed: list[Mail] = []
        self.delay = delay
        self._lock = threading.Lock()
        self._data_count = 0
        self._hold: tuple[int, bool] | None = None
        self._released = threading.Event()
        self.held = threading.Event()
        port = _free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=port)
        self._controller.start()
        self.url = f"smtp://127.0.0.1:{port}"

    def hold(self, index: int, *, accepted: bool = True) -> None:
        with self._lock:
            self._hold = (index, accepted)
        self._released.clear()
        self.held.clear()

    def release(self) -> None:
        self._released.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:  # half before the message is taken, half before the reply
            await asyncio.sleep(self.delay / 2)
        with self._lock:
            index = self._data_count
            self._data_count += 1
            hold = self._hold is not None and self._hold[0] == index
            accepted = not hold or (self._hold is not None and self._hold[1])
            if accepted:
                self.received.append(bytes(envelope.original_content or b""))
        if hold:
            self.held.set()
            while not self._released.is_set():
                await asyncio.sleep(0.01)
            return "250 2.0.0 accepted" if accepted else "421 4.3.0 aborted"
        if self.delay:
            await asyncio.sleep(self.delay / 2)
        return "250 2.0.0 accepted"

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            received = list(self.received)
        self._parsed += [parse_mail(raw) for raw in received[len(self._parsed):]]
        return list(self._parsed)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            assert time.monotonic() < deadline, f"{self.count()} of {count} messages arrived"
            time.sleep(0.005)

    def stop(self) -> None:
        self.release()
        self._controller.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
