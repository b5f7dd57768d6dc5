"""Storage faults are one-line errors with their real cause (disk full, read-only), at commit,
lock and delivery time, and leave state and outbox consistent: the next apply, once the disk is
fixed, delivers what is left, at most the one message in flight twice.

The state lives on a small tmpfs mounted for the test (as root, or with passwordless sudo);
where mounting is impossible these tests, and only these, are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.cli import Result
from tests.helpers.mail import copies_by_message_id
from tests.helpers.patience import patience
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import Mode, NewWorkspace, Workspace

FROM = ["--default-from", "noreply@acme.com", "--retry-backoff", "0.01", "--allow-new-state"]


class Tmpfs:
    def __init__(self, path: Path):
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run([*_ADMIN, "mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def fill(self) -> Path:
        """Write a file until the file system is full; return it (delete it to free space)."""
        filler = self.path / "filler"
        with open(filler, "wb", buffering=0) as file:  # unbuffered: closing writes nothing
            try:
                while True:
                    file.write(b"\0" * 65536)
            except OSError:
                pass
        return filler


_ADMIN = [] if os.geteuid() == 0 else ["sudo", "-n"]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    mount = tmp_path / "fs"
    mount.mkdir()
    options = f"size=256k,mode=0755,uid={os.getuid()},gid={os.getgid()}"
    try:
        done = subprocess.run(
            [*_ADMIN, "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
        reason = done.stderr.strip() if done.returncode else ""
    except OSError as error:
        reason = str(error)
    if reason:
        pytest.skip(
            f"cannot mount a small tmpfs here to fill it ({reason}); needs root or "
            "passwordless sudo"
        )
    try:
        yield Tmpfs(mount)
    finally:
        subprocess.run([*_ADMIN, "umount", "-l", str(mount)], check=False)


def on_tmpfs(
    tmp_path: Path,
    new_workspace: NewWorkspace,
    tmpfs: Tmpfs,
    users: int,
    mail: str = "",
    mode: Mode = "in-process",
) -> Workspace:
    ws = new_workspace(str(tmpfs.path / "state.db"), root=tmp_path / "ws", mail=mail, mode=mode)
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(users, domain="acme.com"))
    return ws


def one_line(result: Result) -> str:
    assert "Traceback" not in result.output, str(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, str(result)
    return lines[0]


def test_a_full_disk_at_commit_is_one_line_and_nothing_is_sent(
    tmp_path: Path, new_workspace: NewWorkspace, tmpfs: Tmpfs
) -> None:
    ws = on_tmpfs(tmp_path, new_workspace, tmpfs, 150)
    result = ws.run("apply", "--auto-approve", *FROM)
    assert result.code == 1
    line = one_line(result)
    assert line.startswith(f"error: state {tmpfs.path / 'state.db'}: ") and "full" in line, line
    assert ws.mails() == []

    tmpfs.remount("size=16m")
    again = ws.run("apply", "--auto-approve", *FROM)
    assert again.code == 0, str(again)
    assert len(ws.mails()) == 150


def test_a_full_disk_during_delivery_stops_with_the_real_cause_and_resumes(
    tmp_path: Path, new_workspace: NewWorkspace, tmpfs: Tmpfs, smtp_server: SMTPTestServer
) -> None:
    tmpfs.remount("size=4m")
    smtp = smtp_server
    ws = on_tmpfs(tmp_path, new_workspace, tmpfs, 20, mail=smtp.url, mode="process")
    smtp.hold(5)
    running = ws.spawn("apply", "--auto-approve", *FROM)
    assert smtp.held.wait(patience(30))
    filler = tmpfs.fill()
    smtp.release()
    result = running.wait(60)
    assert result.code == 1
    line = one_line(result)
    assert "full" in line or "no space" in line, line
    assert "cannot rollback" not in line

    filler.unlink()
    again = ws.run("apply", "--auto-approve", *FROM, timeout=60)
    assert again.code == 0, str(again)
    sent = copies_by_message_id(smtp.mails)
    assert len(sent) == 20 and sum(n - 1 for n in sent.values()) <= 1, sent.most_common(2)


def test_a_read_only_state_is_one_line_for_apply_and_fine_for_plan(
    tmp_path: Path, new_workspace: NewWorkspace, tmpfs: Tmpfs
) -> None:
    ws = on_tmpfs(tmp_path, new_workspace, tmpfs, 3)
    ws.apply("--allow-new-state")
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(4, domain="acme.com"))
    tmpfs.remount("ro")
    assert ws.run("plan").code == 0
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    line = one_line(result)
    assert "read-only" in line or "readonly" in line, line
    assert len(ws.mails()) == 3


def test_a_full_disk_at_lock_time_is_one_line(
    tmp_path: Path, new_workspace: NewWorkspace, tmpfs: Tmpfs
) -> None:
    ws = on_tmpfs(tmp_path, new_workspace, tmpfs, 3)
    ws.apply("--allow-new-state")
    (tmpfs.path / "state.db.acme.lock").unlink()
    tmpfs.fill()
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1
    line = one_line(result)
    assert "lock file" in line and "no space left on device" in line, line


def test_no_room_for_the_users_read_is_one_line_and_nothing_is_planned(
    tmp_path: Path, new_workspace: NewWorkspace, tmpfs: Tmpfs
) -> None:
    """The users read are kept in a temporary file, not in memory (issue 15): a temporary
    folder without room for them is a clear error, not a traceback."""
    ws = new_workspace(root=tmp_path / "ws")
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(12000, domain="acme.com"))
    full = {"TMPDIR": str(tmpfs.path), "SQLITE_TMPDIR": str(tmpfs.path)}

    result = ws.python_m(*ws.args(("plan", "--out", str(tmp_path / "saved"))), env=full)

    assert result.code == 1
    line = one_line(result)
    assert line.startswith("error: cannot keep the users read in a temporary file: "), line
    assert "full" in line and "TMPDIR" in line, line
    assert not (tmp_path / "saved").exists()
    assert ws.python_m(*ws.args(("validate",))).code == 0


def test_fmt_and_init_on_a_read_only_folder_are_one_line(
    tmp_path: Path, new_workspace: NewWorkspace, tmpfs: Tmpfs
) -> None:
    """What fmt rewrote before the one it could not is named; init leaves nothing."""
    ws = new_workspace(root=tmpfs.path / "ws")
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    tenant = ws.config / "acme" / "tenant.yaml"
    tenant.write_text(tenant.read_text(encoding="utf-8") + "\n\n\n", encoding="utf-8")
    export = tmp_path / "users.csv"
    export.write_text('"UserPrincipalName","ConferenceId"\n"a@acme.com","7000001"\n')
    tmpfs.remount("ro")

    fmt = ws.run("fmt")
    assert fmt.code == 1
    line = one_line(fmt)
    assert "tenant.yaml: cannot rewrite it (Read-only file system)" in line, line
    assert "rewritten before it: none" in line

    init = ws.run("init", "newco", "--from", str(export), "--default-number", "14255550100")
    assert init.code == 1
    assert "Traceback" not in init.output, str(init)
    assert "cannot write under" in init.stderr and "Read-only file system" in init.stderr
    assert not (ws.config / "newco").exists()
