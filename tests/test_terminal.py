"""The terminal, for real: the CLI runs in a process whose stdout and/or stderr is a
pseudo-terminal.

Colour and the progress bar depend on ``isatty()``, so these tests give the process a pty (a
real-process workspace's ``terminals``) instead of faking ``isatty`` — what an administrator sees
in a terminal, versus CI logs and pipes, where the output must stay plain.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click
import pytest

from tests.helpers.cli import Env, Result
from tests.helpers.tenants import EXAMPLE
from tests.helpers.workspace import Workspace

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PLAIN: Env = {"NO_COLOR": None, "FORCE_COLOR": None}
"""Colour is the command's own choice: no NO_COLOR or FORCE_COLOR from the test's environment."""


def run(
    ws: Workspace, *args: str, tty_out: bool = False, tty_err: bool = False, env: Env | None = None
) -> Result:
    """``reconciler ARGS`` typed in the workspace, with stdout and/or stderr on a terminal of
    its own (a real process); without any terminal, in-process (its streams are not
    terminals)."""
    terminals = [name for name, tty in (("stdout", tty_out), ("stderr", tty_err)) if tty]
    if not terminals:
        return ws.cli(*args, env={**PLAIN, **(env or {})})
    return ws.in_mode("process").cli(
        *args,
        env={**PLAIN, "TERM": "xterm-256color", "COLUMNS": "100", **(env or {})},
        terminals=terminals,
        timeout=60,
    )


@pytest.fixture
def ws(example_workspace: Workspace) -> Workspace:
    return example_workspace


def bulk_tenant(work: Path, users: int) -> None:
    """A second tenant with ``users`` new enabled users: enough mail for a progress bar."""
    folder = work / "tenants" / "bulk"
    folder.mkdir()
    shutil.copy(work / "tenants" / "contoso" / "tenant.yaml", folder / "tenant.yaml")
    lines = ["users:"]
    for i in range(users):
        lines += [
            f"  user{i:03}@bulk.example:",
            "    license: true",
            f'    conference_id: "{7000000 + i}"',
        ]
    (folder / "users.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_plan_is_coloured_on_a_terminal_only(ws: Workspace) -> None:
    shutil.copytree(ws.root / "tenants" / "contoso", ws.root / "tenants" / "fabrikam")
    (ws.root / "tenants" / "contoso" / "users" / "sales.yaml").unlink()
    run(ws, "apply", "--auto-approve", "--tenant", "contoso")
    # now: fabrikam creates users (+), contoso updates (~) once sales.yaml is back and deletes (-)
    shutil.copy(
        EXAMPLE / "contoso" / "users" / "sales.yaml",
        ws.root / "tenants" / "contoso" / "users" / "sales.yaml",
    )
    (ws.root / "tenants" / "contoso" / "users" / "paris.yaml").unlink()

    coloured = run(ws, "plan", tty_out=True)
    assert coloured.code == 0, coloured.stderr
    assert ANSI.search(coloured.stdout)
    plain_symbols = ANSI.sub("", coloured.stdout)
    assert "+ dan@contoso.com" in plain_symbols  # created (from sales.yaml)
    assert "- chloe@contoso.com" in plain_symbols  # deleted (paris.yaml removed)
    assert "+ alice@contoso.com" in plain_symbols  # fabrikam, new tenant
    assert click.style("+", fg="green", bold=False) + " dan@contoso.com" in coloured.stdout
    assert click.style("-", fg="red", bold=False) + " chloe@contoso.com" in coloured.stdout

    no_color = run(ws, "plan", tty_out=True, env={"NO_COLOR": "1"})
    piped = run(ws, "plan")
    for output in (no_color, piped):
        assert output.code == 0
        assert not ANSI.search(output.stdout)
        assert output.stdout == plain_symbols  # same text, colour aside


def test_quiet_plan_and_detailed_exit_code(ws: Workspace) -> None:
    quiet = run(ws, "plan", "--quiet", "--detailed-exitcode", tty_out=True)
    assert (quiet.code, quiet.stdout) == (2, "")
    loud = run(ws, "plan", "--detailed-exitcode")
    assert loud.code == 2 and "Plan:" in loud.stdout


def test_apply_shows_a_progress_bar_on_a_terminal(ws: Workspace) -> None:
    bulk_tenant(ws.root, 25)
    result = run(
        ws,
        "apply",
        "--auto-approve",
        "--allow-new-state",
        "--tenant",
        "bulk",
        tty_out=True,
        tty_err=True,
    )
    assert result.code == 0, result.stderr
    assert "bulk: sending" in result.stderr and "100%" in result.stderr
    assert "Applied: bulk (serial 1). 25 email(s) delivered" in ANSI.sub("", result.stdout)
    assert len(list((ws.root / ".reconciler" / "mail" / "new").iterdir())) == 25


def test_no_progress_bar_when_not_a_terminal_or_few_emails(ws: Workspace) -> None:
    bulk_tenant(ws.root, 25)
    piped = run(ws, "apply", "--auto-approve", "--allow-new-state", "--tenant", "bulk")
    assert piped.code == 0 and "sending" not in piped.stderr and "%" not in piped.stderr
    few = run(ws, "apply", "--auto-approve", "--tenant", "contoso", tty_err=True)
    assert few.code == 0 and "sending" not in few.stderr  # 4 emails: no bar


def test_quiet_apply(ws: Workspace) -> None:
    bulk_tenant(ws.root, 25)
    result = run(
        ws, "apply", "--auto-approve", "--allow-new-state", "--quiet", tty_out=True, tty_err=True
    )
    assert result.code == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # no plan, no bar, no summary
    assert len(list((ws.root / ".reconciler" / "mail" / "new").iterdir())) == 29
    again = run(ws, "apply", "--auto-approve")
    assert "nothing to change" in again.stdout  # it was applied, quietly


def test_quiet_apply_still_prints_suppressed_paths(ws: Workspace) -> None:
    tenant = ws.root / "tenants" / "contoso" / "tenant.yaml"
    tenant.write_text(
        tenant.read_text(encoding="utf-8").replace(
            "automatically_send_emails_to_users: true", "automatically_send_emails_to_users: false"
        ),
        encoding="utf-8",
    )
    result = run(ws, "apply", "--auto-approve", "--quiet")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("suppressed: ") for line in lines)
