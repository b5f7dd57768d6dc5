"""The terminal, for real: the CLI runs in a subprocess whose stdout/stderr is a pseudo-terminal.

Colour and the progress bar depend on ``isatty()``, so these tests give the process a pty from
:mod:`pty` instead of faking ``isatty`` — what an administrator sees in a terminal, versus CI logs
and pipes, where the output must stay plain.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reconciler.cli import main

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run(cwd: Path, *args: str, tty_out: bool = False, tty_err: bool = False,
        env: dict[str, str] | None = None) -> Run:
    """``python -m reconciler ARGS`` with stdout and/or stderr on a pseudo-terminal; without
    any terminal, in-process (a subprocess costs a second of imports)."""
    if not (tty_out or tty_err):
        return run_piped(cwd, *args, env=env)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("RECONCILER_") and k not in ("NO_COLOR", "FORCE_COLOR")}
    full_env = {**base, "TERM": "xterm-256color", "COLUMNS": "100", "PYTHONPATH": str(ROOT),
                **(env or {})}
    ttys: dict[str, tuple[int, int]] = {}
    if tty_out:
        ttys["out"] = pty.openpty()
    if tty_err:
        ttys["err"] = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=ttys["out"][1] if tty_out else subprocess.PIPE,
        stderr=ttys["err"][1] if tty_err else subprocess.PIPE,
    )
    for _, replica in ttys.values():
        os.close(replica)
    captured = {name: bytearray() for name in ttys}
    open_fds = {primary: name for name, (primary, _) in ttys.items()}
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], 60)
        assert ready, "the command hung"
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side is closed
                chunk = b""
            if chunk:
                captured[open_fds[fd]] += chunk
            else:
                os.close(fd)
                del open_fds[fd]
    out, err = process.communicate(timeout=60)
    decode = lambda data: bytes(data).decode("utf-8").replace("\r\n", "\n")  # noqa: E731
    return Run(process.returncode,
               decode(captured["out"]) if tty_out else out.decode("utf-8"),
               decode(captured["err"]) if tty_err else err.decode("utf-8"))


def run_piped(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """The CLI with plain pipes (CliRunner's streams are not terminals)."""
    cleared: dict[str, str | None] = {k: None for k in os.environ
                                      if k.startswith("RECONCILER_") or k == "NO_COLOR"}
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env={**cleared, **(env or {})},
                                    catch_exceptions=False)
    finally:
        os.chdir(previous)
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "tenants", tmp_path / "tenants")
    return tmp_path


def bulk_tenant(work: Path, users: int) -> None:
    """A second tenant with ``users`` new enabled users: enough mail for a progress bar."""
    folder = work / "tenants" / "bulk"
    folder.mkdir()
    shutil.copy(work / "tenants" / "contoso" / "tenant.yaml", folder / "tenant.yaml")
    lines = ["users:"]
    for i in range(users):
        lines += [f"  user{i:03}@bulk.example:", "    license: true",
                  f'    conference_id: "{7000000 + i}"']
    (folder / "users.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_plan_is_coloured_on_a_terminal_only(work: Path) -> None:
    shutil.copytree(work / "tenants" / "contoso", work / "tenants" / "fabrikam")
    (work / "tenants" / "contoso" / "users" / "sales.yaml").unlink()
    run(work, "apply", "--auto-approve", "--tenant", "contoso")
    # now: fabrikam creates users (+), contoso updates (~) once sales.yaml is back and deletes (-)
    shutil.copy(ROOT / "tenants" / "contoso" / "users" / "sales.yaml",
                work / "tenants" / "contoso" / "users" / "sales.yaml")
    (work / "tenants" / "contoso" / "users" / "paris.yaml").unlink()

    coloured = run(work, "plan", tty_out=True)
    assert coloured.code == 0, coloured.stderr
    assert ANSI.search(coloured.stdout)
    plain_symbols = ANSI.sub("", coloured.stdout)
    assert "+ dan@contoso.com" in plain_symbols          # created (from sales.yaml)
    assert "- chloe@contoso.com" in plain_symbols        # deleted (paris.yaml removed)
    assert "+ alice@contoso.com" in plain_symbols        # fabrikam, new tenant
    assert click.style("+", fg="green", bold=False) + " dan@contoso.com" in coloured.stdout
    assert click.style("-", fg="red", bold=False) + " chloe@contoso.com" in coloured.stdout

    no_color = run(work, "plan", tty_out=True, env={"NO_COLOR": "1"})
    piped = run(work, "plan")
    for output in (no_color, piped):
        assert output.code == 0
        assert not ANSI.search(output.stdout)
        assert output.stdout == plain_symbols  # same text, colour aside


def test_quiet_plan_and_detailed_exit_code(work: Path) -> None:
    quiet = run(work, "plan", "--quiet", "--detailed-exitcode", tty_out=True)
    assert (quiet.code, quiet.stdout) == (2, "")
    loud = run(work, "plan", "--detailed-exitcode")
    assert loud.code == 2 and "Plan:" in loud.stdout


def test_apply_shows_a_progress_bar_on_a_terminal(work: Path) -> None:
    bulk_tenant(work, 25)
    result = run(work, "apply", "--auto-approve", "--allow-new-state", "--tenant", "bulk",
                 tty_out=True, tty_err=True)
    assert result.code == 0, result.stderr
    assert "bulk: sending" in result.stderr and "100%" in result.stderr
    assert "Applied: bulk (serial 1). 25 email(s) delivered" in ANSI.sub("", result.stdout)
    assert len(list((work / ".reconciler" / "mail" / "new").iterdir())) == 25


def test_no_progress_bar_when_not_a_terminal_or_few_emails(work: Path) -> None:
    bulk_tenant(work, 25)
    piped = run(work, "apply", "--auto-approve", "--allow-new-state", "--tenant", "bulk")
    assert piped.code == 0 and "sending" not in piped.stderr and "%" not in piped.stderr
    few = run(work, "apply", "--auto-approve", "--tenant", "contoso", tty_err=True)
    assert few.code == 0 and "sending" not in few.stderr  # 4 emails: no bar


def test_quiet_apply(work: Path) -> None:
    bulk_tenant(work, 25)
    result = run(work, "apply", "--auto-approve", "--allow-new-state", "--quiet", tty_out=True,
                 tty_err=True)
    assert result.code == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # no plan, no bar, no summary
    assert len(list((work / ".reconciler" / "mail" / "new").iterdir())) == 29
    again = run(work, "apply", "--auto-approve")
    assert "nothing to change" in again.stdout  # it was applied, quietly


def test_quiet_apply_still_prints_suppressed_paths(work: Path) -> None:
    tenant = work / "tenants" / "contoso" / "tenant.yaml"
    tenant.write_text(tenant.read_text(encoding="utf-8").replace(
        "automatically_send_emails_to_users: true", "automatically_send_emails_to_users: false"),
        encoding="utf-8")
    result = run(work, "apply", "--auto-approve", "--quiet")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("suppressed: ") for line in lines)
