"""kill -9 of `reconciler apply` at any instant, then a re-run: every planned email arrives, none
twice except at most the one in flight at the kill (then with the same Message-ID and the very
same bytes), and the state's serial, outbox and history stay consistent."""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.mail import Mail, read_maildir
from tests.helpers.patience import patience
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

USERS = 8


def sending_to(ws: Workspace, server: SMTPTestServer) -> Workspace:
    ws.mail = server.url
    ws.env["RECONCILER_DEFAULT_FROM"] = "deploy@example.org"
    return ws


def check_delivered_once(mails: list[Mail], planned: int, *, in_flight: str | None = None) -> None:
    """``planned`` distinct messages; at most one of them twice (``in_flight`` when given),
    and a doubled message is byte-for-byte the same email (same Message-ID, same PIN)."""
    counts = Counter(m.message_id for m in mails)
    assert len(counts) == planned, f"{len(counts)} distinct emails of {planned} planned"
    doubled = [mid for mid, n in counts.items() if n > 1]
    assert len(doubled) <= 1 and all(counts[mid] == 2 for mid in doubled), counts
    if in_flight is not None:
        assert doubled == [in_flight], "exactly the message in flight at the kill came twice"
    for mid in doubled:
        first, second = (m for m in mails if m.message_id == mid)
        assert first.raw.replace(b"\r\n", b"\n") == second.raw.replace(b"\r\n", b"\n")
        assert first.pins == second.pins


def check_state(ws: Workspace, serial: int, emails: int) -> None:
    state = ws.tenant_state("contoso")
    assert state is not None and state["serial"] == serial
    assert [m["status"] for m in state["outbox"]] == ["delivered"] * emails
    assert [h["serial"] for h in ws.history()] == list(range(1, serial + 1))


def test_kill_with_a_message_in_flight(
    process_workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    """The server has message 3 but its reply never reaches apply: at most that one twice."""
    gate = smtp_server
    ws = sending_to(process_workspace, gate)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(USERS))
    gate.hold(3, accepted=True)
    apply = ws.spawn("apply", "--auto-approve")
    assert gate.held.wait(patience(20)), "apply never reached the fourth message"
    assert apply.alive()
    apply.kill()
    killed = apply.wait()
    assert killed.code == -9
    gate.release()
    in_flight = gate.mails[3].message_id

    again = ws.apply()
    assert "email(s) delivered" in again.stdout
    check_delivered_once(gate.mails, USERS, in_flight=in_flight)
    assert gate.mails[4].message_id == in_flight, "the queue resumes with the message in flight"
    check_state(ws, serial=1, emails=USERS)
    ws.apply()
    assert len(gate.mails) == USERS + 1, "nothing more afterwards"


def test_kill_after_the_commit_before_any_delivery(
    process_workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    """Killed while the first message is being refused: the state and the whole outbox are
    committed; the re-run sends every message exactly once and plans nothing new."""
    gate = smtp_server
    ws = sending_to(process_workspace, gate)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(USERS))
    gate.hold(0, accepted=False)
    apply = ws.spawn("apply", "--auto-approve")
    assert gate.held.wait(patience(20))
    apply.kill()
    apply.wait()
    gate.release()
    state = ws.tenant_state("contoso")
    assert state is not None and state["serial"] == 1
    assert [m["status"] for m in state["outbox"]] == ["queued"] * USERS

    again = ws.apply()
    assert "Applied: nothing to change" in again.stdout
    check_delivered_once(gate.mails, USERS)
    assert len(gate.mails) == USERS
    check_state(ws, serial=1, emails=USERS)


def test_kill_at_random_points(
    process_workspace: Workspace, new_smtp_server: Callable[..., SMTPTestServer]
) -> None:
    """A slow server (20 ms a message); each round asks every user for a PIN reset and kills
    apply at a random point — a random instant after the start (planning, commit, first
    connection), or once a random number of messages has arrived plus a random fraction of a
    message — then re-runs it."""
    gate = new_smtp_server(delay=0.02)
    ws = sending_to(process_workspace, gate)
    users = enabled_users(USERS)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply()
    check_delivered_once(gate.mails, USERS)

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = 0
    for round_ in range(1, 7):
        for user in users.values():
            user["pin_reset"] = f"round {round_}"
        write_tenant(ws.config, "contoso", tenant_doc(), users)
        before = len(gate.mails)
        arrived = rng.randrange(-1, USERS)  # -1: by the clock from the start
        pause = rng.uniform(0.0, 0.3 if arrived < 0 else 0.03)
        apply = ws.spawn("apply", "--auto-approve")
        if arrived >= 0:
            gate.wait_for(before + arrived)
        time.sleep(pause)
        apply.kill()
        kills += apply.wait().code == -9
        ws.apply()
        where = f"seed {seed}, round {round_}: killed {pause:.3f} s after " + (
            f"{arrived} message(s) arrived" if arrived >= 0 else "the start"
        )
        new = gate.mails[before:]
        try:
            assert all(m.type == "pin-reset" for m in new)
            check_delivered_once(new, USERS)
            check_state(ws, serial=round_ + 1, emails=USERS * (round_ + 1))
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from error
    assert kills >= 3, f"seed {seed}: only {kills} of 6 applies were still running to kill"
    ws.apply()
    assert len(gate.mails) == before + len(new), "nothing left over after the last round"


def _composing(ws: Workspace) -> bool:
    """The apply has written some batches of messages and not yet the state that makes them
    visible (nothing delivered: no state, no mail)."""
    if "://" not in ws.state:
        import sqlite3

        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{ws.state}?mode=ro", uri=True, timeout=5)
            ) as db:
                written = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
                committed = db.execute("SELECT count(*) FROM tenants").fetchone()[0]
        except sqlite3.OperationalError:  # no file or no tables yet
            return False
    else:
        import psycopg

        with psycopg.connect(ws.state, autocommit=True) as db:
            try:
                written = db.execute("SELECT count(*) FROM reconciler_outbox").fetchone()[0]
                committed = db.execute("SELECT count(*) FROM reconciler_tenants").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return False
    return written >= 400 and committed == 0 and not any(ws.maildir.rglob("new/*"))


def test_kill_while_a_large_first_apply_composes_its_batches(
    process_workspace: Workspace,
) -> None:
    """A first apply writes its messages a batch per transaction before the one that commits
    its state; killed after several batches, it leaves no state and no visible message, and
    the re-run discards them and sends every email exactly once."""
    ws = process_workspace
    users = 1000  # several batches, and more than SQLite's page cache holds
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(users))
    apply = ws.spawn("apply", "--auto-approve", "--allow-new-state")
    deadline = time.monotonic() + patience(120)
    while not _composing(ws):
        assert apply.alive(), "apply ended before it was seen composing"
        assert time.monotonic() < deadline, "apply was never seen composing"
        time.sleep(0.02)
    workers = _children(apply.pid)
    assert workers, "composed by worker processes"
    apply.kill()
    assert apply.wait().code == -9
    deadline = time.monotonic() + patience(10)
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "the killed apply's workers outlived it"
        time.sleep(0.1)
    assert ws.tenant_state("contoso") is None, "nothing of the killed commit remains"
    assert ws.history() == []
    assert not any(ws.maildir.rglob("new/*"))

    # 1,000 emails: about 9 s on an idle 2-core machine, so more than the default 30 s limit.
    again = ws.run("apply", "--auto-approve", "--allow-new-state", timeout=120)
    assert again.code == 0, str(again)
    mails = read_maildir(ws.maildir)
    check_delivered_once(mails, users)
    assert len(mails) == users
    check_state(ws, serial=1, emails=users)


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux's /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_kill_while_delivering_into_a_maildir_doubles_nothing(new_workspace: NewWorkspace) -> None:
    """A Maildir's deliveries are recorded 200 at a time: killed with some delivered but not yet
    recorded, the re-run sends those again, and the Maildir, which keeps one copy per Message-ID,
    ends with every message exactly once (not even the one in flight twice)."""
    ws = new_workspace(mode="process")
    users = 600
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(users))
    apply = ws.spawn("apply", "--auto-approve", "--allow-new-state")
    deadline = time.monotonic() + patience(120)
    while not _written_but_unrecorded(ws) >= 20:
        assert apply.alive(), "apply ended before it was seen delivering"
        assert time.monotonic() < deadline, "apply was never seen delivering"
        time.sleep(0.01)
    apply.kill()
    assert apply.wait().code == -9
    assert _written_but_unrecorded(ws) > 0, "the kill left deliveries unrecorded"

    again = ws.run("apply", "--auto-approve", timeout=120)
    assert again.code == 0, str(again)
    mails = read_maildir(ws.maildir)
    assert len(mails) == users and len({m.message_id for m in mails}) == users
    check_state(ws, serial=1, emails=users)


def _written_but_unrecorded(ws: Workspace) -> int:
    """Messages in the Maildir beyond those the state records as delivered."""
    import sqlite3

    files = len(list(ws.maildir.glob("new/*")))
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{ws.state}?mode=ro", uri=True, timeout=5)
        ) as db:
            recorded = db.execute(
                "SELECT count(*) FROM outbox WHERE status = 'delivered'"
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    return files - recorded
