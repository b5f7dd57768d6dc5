"""The test harness: a :class:`Workspace` is one test's configuration folder, state location and
Maildir, and the CLI bound to them, in one of two modes:

- ``"in-process"`` (the default): each command runs in the test's own process, through click's
  CliRunner isolation (:func:`tests.helpers.cli.invoke`): fast, and a monkeypatch reaches it;
- ``"process"``: each command is a process of its own (:mod:`tests.helpers.processes`), for
  what only a process has: being killed with SIGKILL, holding a lock against another process, a
  terminal. Only this mode can :meth:`Workspace.spawn`.

Both modes give a command the same environment (the test's, without RECONCILER_* settings,
plus :data:`tests.helpers.cli.TEST_ENV`, plus the workspace's and the call's ``env``), the
workspace folder as working directory, separate stdout and stderr and the exit code. The
fixtures in ``tests/conftest.py`` hand them out.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tests.helpers import processes
from tests.helpers.cli import Env, Result, invoke
from tests.helpers.mail import Mail, read_maildir
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant

Mode = Literal["in-process", "process"]


@dataclass
class Workspace:
    """One test's configuration folder, state location and Maildir, and the CLI bound to them."""

    root: Path
    state: str
    mail: str = ""
    env: dict[str, str | None] = field(default_factory=dict)
    mode: Mode = "in-process"

    def __post_init__(self) -> None:
        if not self.mail:
            self.mail = f"maildir:{self.maildir}"

    @classmethod
    def create(
        cls,
        root: Path,
        state: str | None = None,
        *,
        mail: str = "",
        env: Env | None = None,
        mode: Mode = "in-process",
    ) -> Workspace:
        """A workspace in ``root`` with its (empty) configuration folder; without ``state``,
        a fresh SQLite state in ``root/state/state.db`` whose folder exists (reconciler creates
        no folder). A ``Workspace(...)`` made directly prepares nothing."""
        workspace = cls(
            root,
            state or str(root / "state" / "state.db"),
            mail=mail,
            env=dict(env or {}),
            mode=mode,
        )
        workspace.config.mkdir(parents=True, exist_ok=True)
        if state is None:
            (root / "state").mkdir(exist_ok=True)
        return workspace

    def in_mode(self, mode: Mode) -> Workspace:
        """The same folders, state and settings, the CLI run in ``mode``."""
        return dataclasses.replace(self, env=dict(self.env), mode=mode)

    @property
    def config(self) -> Path:
        return self.root / "tenants"

    @property
    def maildir(self) -> Path:
        return self.root / "mail"

    def args(
        self, command: Sequence[str], *, mail: str | None = None, state: str | None = None
    ) -> list[str]:
        """``command`` with the workspace's ``--config``, ``--state`` and ``--mail``, those of
        them the command offers (it refuses the others)."""
        return with_options(
            command, config=str(self.config), state=state or self.state, mail=mail or self.mail
        )

    # --- running the CLI ------------------------------------------------------------------

    def run(
        self,
        *command: str,
        mail: str | None = None,
        state: str | None = None,
        env: Env | None = None,
        timeout: float = 30.0,
        umask: int = 0o022,
        terminals: Collection[str] = (),
    ) -> Result:
        """``reconciler COMMAND`` on the workspace's configuration, state and mail."""
        return self.cli(
            *self.args(command, mail=mail, state=state),
            env=env,
            timeout=timeout,
            umask=umask,
            terminals=terminals,
        )

    def cli(
        self,
        *argv: str,
        env: Env | None = None,
        timeout: float = 30.0,
        umask: int = 0o022,
        terminals: Collection[str] = (),
    ) -> Result:
        """``reconciler ARGV`` as typed in the workspace folder: no option added (relative
        paths and the defaults, such as ``tenants`` and ``.reconciler/``, are the folder's).
        ``terminals``: the streams ("stdout", "stderr") that are a terminal (process mode)."""
        merged = {**self.env, **(env or {})}
        if self.mode == "process":
            return processes.run(
                argv, cwd=self.root, env=merged, timeout=timeout, umask=umask, terminals=terminals
            )
        assert not terminals, "a terminal needs a process: use a process-mode workspace"
        return invoke(argv, cwd=self.root, env=merged, umask=umask, timeout=timeout)

    def spawn(
        self,
        *command: str,
        mail: str | None = None,
        env: Env | None = None,
        options: bool = True,
        stdin: str = os.devnull,
        stdout: str | None = None,
        stderr: str | None = None,
    ) -> processes.Running:
        """Start ``reconciler COMMAND`` (with the workspace's options unless ``options`` is
        false) in a process of its own, and return at once; see :func:`processes.spawn`."""
        assert self.mode == "process", "only a process-mode workspace starts processes"
        argv = self.args(command, mail=mail) if options else list(command)
        return processes.spawn(
            argv,
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )

    def python_m(
        self, *argv: str, env: Env | None = None, wrapper: Sequence[str] = (), timeout: float = 60.0
    ) -> Result:
        """``python -m reconciler ARGV`` in the workspace folder, through the interpreter's real
        start-up (in either mode: what is tested is that entry point)."""
        return processes.python_m(
            argv, cwd=self.root, env={**self.env, **(env or {})}, wrapper=wrapper, timeout=timeout
        )

    def apply(
        self, *extra: str, mail: str | None = None, expect: int | None = 0, env: Env | None = None
    ) -> Result:
        """``apply --auto-approve``; checks the exit code unless ``expect`` is None."""
        result = self.run("apply", "--auto-approve", *extra, mail=mail, env=env)
        if expect is not None:
            assert result.code == expect, str(result)
        return result

    # --- reading what it left -------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """Every file of an SQLite state folder and of the Maildir: what a refused command must
        leave byte for byte as it was."""
        folder = Path(self.state).parent if "://" not in self.state else None
        files = [*(sorted(folder.rglob("*")) if folder else []), *sorted(self.maildir.rglob("*"))]
        return {os.fspath(p): p.read_bytes() for p in files if p.is_file()}

    def state_show(self) -> dict[str, Any]:
        result = self.run("state", "show")
        assert result.code == 0, str(result)
        return json.loads(result.stdout)

    def tenant_state(self, name: str) -> dict[str, Any] | None:
        return next((t for t in self.state_show()["tenants"] if t["name"] == name), None)

    def history(self) -> list[dict[str, Any]]:
        result = self.run("history", "--format", "json")
        assert result.code == 0, str(result)
        return json.loads(result.stdout)

    def plan_json(self) -> dict[str, Any]:
        result = self.run("plan", "--format", "json")
        assert result.code == 0, str(result)
        return json.loads(result.stdout)

    def mails(self) -> list[Mail]:
        return read_maildir(self.maildir)


def with_options(command: Sequence[str], **values: str | None) -> list[str]:
    """``command`` followed by ``--NAME VALUE`` for each value given (not None) that the
    command offers: what an administrator would type (a command refuses options it ignores)."""
    accepted = offered(command)
    options = ((f"--{name.replace('_', '-')}", value) for name, value in values.items())
    return [
        *command,
        *(a for o, v in options if v is not None and o in accepted for a in (o, v)),
    ]


def offered(command: Sequence[str]) -> set[str]:
    """The options ``reconciler COMMAND`` accepts (a group's subcommand followed)."""
    import click

    from reconciler.cli import main

    node: click.Command = main
    for word in command:
        if not isinstance(node, click.Group) or word not in node.commands:
            break
        node = node.commands[word]
    return {name for param in node.params for name in param.opts}


class NewWorkspace(Protocol):
    """The ``new_workspace`` fixture: :meth:`Workspace.create` in the test's folder."""

    def __call__(
        self,
        state: str | None = None,
        *,
        root: Path | None = None,
        mail: str = "",
        env: Env | None = None,
        mode: Mode = "in-process",
    ) -> Workspace: ...


def state_file(state_location: str) -> Path | None:
    """The SQLite file behind ``--state``, or None when the state is a database URL."""
    return None if "://" in state_location else Path(state_location)


def with_acme(ws: Workspace, users: int) -> Workspace:
    """``ws`` with one tenant ``acme`` of ``users`` enabled users (not applied yet)."""
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(users, domain="acme.com"))
    return ws
