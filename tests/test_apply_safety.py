"""The guard rails of apply: the tenant lock, saved plans (exact, never stale), confirmation,
the mass-disable guard, PINs that never leak, private files."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sqlite3
import stat
import subprocess
import time
from collections import Counter

import pytest

from reconciler.errors import UserError
from tests.fixtures.smtp import SMTPTestServer
from tests.helpers.cli import Result
from tests.helpers.mail import read_maildir, sequence
from tests.helpers.patience import patience
from tests.helpers.processes import Terminal
from tests.helpers.tenants import enabled_users, tenant_doc, user_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace, state_file


def sending_to(ws: Workspace, server: SMTPTestServer) -> Workspace:
    ws.mail = server.url
    ws.env["RECONCILER_DEFAULT_FROM"] = "deploy@example.org"
    return ws


# --- the tenant lock -------------------------------------------------------------------------

LOCKED = re.compile(r"locked by .+ since \d{4}-\d\d-\d\d")


def test_second_apply_is_refused_at_once_or_waits_with_lock_timeout(
    process_workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    gate = smtp_server
    ws = sending_to(process_workspace, gate)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(4))
    gate.hold(1)  # the first apply holds the lock while delivering
    first = ws.spawn("apply", "--auto-approve")
    assert gate.held.wait(patience(20))
    before = ws.state_show()

    started = time.monotonic()
    second = ws.apply(expect=1)
    assert time.monotonic() - started < patience(5), "refused at once, not after a wait"
    assert LOCKED.search(second.stderr), second.stderr
    assert f"pid {first.pid}" in second.stderr, "names the holder"
    assert ws.state_show() == before

    waiting = ws.spawn("apply", "--auto-approve", "--lock-timeout", "30")
    time.sleep(0.5)
    assert waiting.alive(), "waits for the lock instead of failing"
    gate.release()
    assert first.wait().code == 0
    third = waiting.wait()
    assert third.code == 0, str(third)
    assert "nothing to change" in third.stdout and "0 email(s) delivered" in third.stdout
    assert len(gate.mails) == 4
    assert [h["serial"] for h in ws.history()] == [1]


def test_a_killed_apply_does_not_block_the_next(
    process_workspace: Workspace, smtp_server: SMTPTestServer
) -> None:
    gate = smtp_server
    ws = sending_to(process_workspace, gate)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(4))
    gate.hold(1)
    first = ws.spawn("apply", "--auto-approve")
    assert gate.held.wait(patience(20))
    first.kill()
    first.wait()
    gate.release()
    started = time.monotonic()
    ws.apply()  # no --lock-timeout: the dead process's lock is gone
    assert time.monotonic() - started < patience(10)
    assert len({m.message_id for m in gate.mails}) == 4


# --- saved plans -----------------------------------------------------------------------------


def test_a_saved_plan_applies_exactly_what_was_reviewed_from_the_files_it_was_made_from(
    workspace: Workspace,
) -> None:
    ws = workspace
    users = enabled_users(4)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply()

    users["u001@contoso.com"]["pin_reset"] = "planned"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    reviewed = {p: p.read_bytes() for p in ws.config.rglob("*.yaml")}
    plan_file = ws.root / "reviewed.plan"
    made = ws.run("plan", "--out", str(plan_file))
    assert made.code == 0, str(made)

    # merged later, never reviewed: the plan is not what these files say
    users["u002@contoso.com"]["pin_reset"] = "not reviewed"
    users["u003@contoso.com"]["conference_id"] = "7999999"
    write_tenant(ws.config, "contoso", tenant_doc(pin_length=7), users)
    before = ws.state_show()
    refused = ws.run("apply", str(plan_file))
    assert refused.code == 1 and "Traceback" not in refused.output
    (line,) = refused.stderr.splitlines()
    assert "made from other files than" in line and "contoso/tenant.yaml" in line
    assert ws.state_show() == before and len(ws.mails()) == 4

    for path, data in reviewed.items():
        path.write_bytes(data)
    applied = ws.run("apply", str(plan_file))  # no --auto-approve, no terminal: no prompt
    assert applied.code == 0, str(applied)
    assert sequence(ws.mails()[4:]) == [("u001@contoso.com", "pin-reset")]
    state = ws.tenant_state("contoso")
    assert state is not None and state["serial"] == 2
    assert state["users"]["u001@contoso.com"]["pin_reset"] == "planned"

    replay = ws.run("apply", str(plan_file))
    assert replay.code == 1 and "stale" in replay.stderr, "a plan is applied once"
    assert len(ws.mails()) == 5


def test_a_plan_made_on_a_branch_is_refused_on_main(workspace: Workspace) -> None:
    """The attack: on an unmerged branch a user's address points outside and a PIN reset is
    asked; its saved plan applied where main's files say nothing changed must send nothing."""
    ws = workspace
    users = enabled_users(3)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply()
    main = {p: p.read_bytes() for p in ws.config.rglob("*.yaml")}
    users["u001@contoso.com"].update(email="attacker@evil.example", pin_reset="branch")
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    assert ws.run("plan", "--out", "branch.plan").code == 0
    for path, data in main.items():  # back on main
        path.write_bytes(data)
    assert "No changes" in ws.run("plan").stdout
    refused = ws.run("apply", "branch.plan")
    assert refused.code == 1 and "contoso/users.yaml" in refused.stderr, str(refused)
    assert len(ws.mails()) == 3


def test_a_first_apply_plan_is_stale_once_the_tenant_had_a_state(workspace: Workspace) -> None:
    """Planned before any state, applied, then forgotten: the plan must not send `enabled`
    emails again, though the state is once more without the tenant."""
    ws = workspace
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(2))
    assert ws.run("plan", "--out", "first.plan").code == 0
    assert ws.run("apply", "first.plan").code == 0
    assert ws.run("state", "forget", "contoso", "--yes").code == 0
    again = ws.run("apply", "first.plan")
    assert again.code == 1 and "stale" in again.stderr and "forgotten" in again.stderr
    assert len(ws.mails()) == 2


def test_a_plan_cut_down_to_fewer_tenants_than_it_shows_is_refused(workspace: Workspace) -> None:
    ws = workspace
    write_tenant(ws.config, "alpha", tenant_doc(), enabled_users(1, domain="alpha.com"))
    write_tenant(ws.config, "beta", tenant_doc(), enabled_users(1, domain="beta.com"))
    assert ws.run("plan", "--out", "both.plan").code == 0
    document = json.loads((ws.root / "both.plan").read_text(encoding="utf-8"))
    del document["configs"]["beta"]
    (ws.root / "both.plan").write_text(json.dumps(document), encoding="utf-8")
    refused = ws.run("apply", "both.plan")
    assert refused.code == 1, str(refused)
    assert "beta is shown but the plan holds no configuration for it" in refused.stderr
    assert ws.mails() == []


def test_stale_saved_plan_is_refused_and_changes_nothing(workspace: Workspace) -> None:
    ws = workspace
    users = enabled_users(2)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    plan_file = ws.root / "old.plan"
    assert ws.run("plan", "--out", str(plan_file)).code == 0  # made against no state at all
    ws.apply()  # the state moves on
    before = ws.state_show()
    mails = len(ws.mails())

    stale = ws.run("apply", str(plan_file))
    assert stale.code == 1 and "stale" in stale.stderr, str(stale)
    assert "Traceback" not in stale.stderr
    assert ws.state_show() == before and len(ws.mails()) == mails


# --- confirmation ----------------------------------------------------------------------------


def test_without_a_terminal_apply_needs_auto_approve_only_to_change_something(
    workspace: Workspace,
) -> None:
    ws = workspace
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(2))
    refused = ws.run("apply")
    assert refused.code == 1 and "--auto-approve" in refused.stderr
    assert ws.state_show()["tenants"] == [] and ws.mails() == []
    ws.apply()
    nothing = ws.run("apply")
    assert nothing.code == 0 and "Applied: nothing to change" in nothing.stdout, str(nothing)


def answer_on_a_terminal(ws: Workspace, answer: str) -> Result:
    """`apply` with a terminal on stdin that types ``answer``."""
    terminal = Terminal()
    try:
        terminal.type(answer + "\n")
        return ws.spawn("apply", stdin=terminal.path).wait()
    finally:
        terminal.close()


def test_on_a_terminal_apply_asks_and_only_yes_applies(process_workspace: Workspace) -> None:
    ws = process_workspace
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(2))
    declined = answer_on_a_terminal(ws, "y")
    assert declined.code == 1 and "cancelled" in declined.stderr, str(declined)
    assert "Apply this plan" in declined.stdout
    assert ws.state_show()["tenants"] == [] and ws.mails() == []
    accepted = answer_on_a_terminal(ws, "yes")
    assert accepted.code == 0, str(accepted)
    assert len(ws.mails()) == 2


# --- mass-disable guard ----------------------------------------------------------------------


def test_mass_disable_guard(workspace: Workspace) -> None:
    """A deleted users file must not email the whole company."""
    ws = workspace
    files = {"users/team-a.yaml": enabled_users(8), "users/team-b.yaml": enabled_users(2, start=8)}
    write_tenant(ws.config, "contoso", tenant_doc(), user_files=strip(files))
    ws.apply()
    before = ws.state_show()

    write_tenant(
        ws.config,
        "contoso",
        tenant_doc(),
        user_files=strip({"users/team-a.yaml": files["users/team-a.yaml"]}),
    )  # 2 of 10 (20%)
    refused = ws.apply(expect=1)
    assert "--allow-mass-disable" in refused.stderr
    assert ws.state_show() == before and len(ws.mails()) == 10

    allowed = ws.apply("--allow-mass-disable")
    assert "2 email(s) delivered" in allowed.stdout
    assert sequence(ws.mails()[10:]) == [
        ("u008@contoso.com", "disabled"),
        ("u009@contoso.com", "disabled"),
    ]


@pytest.mark.parametrize(("enabled", "disabled"), [(10, 1), (9, 9)])
def test_mass_disable_guard_thresholds(workspace: Workspace, enabled: int, disabled: int) -> None:
    """10% of 10 is not more than 10%; a tenant under 10 enabled users is not guarded."""
    ws = workspace
    users = enabled_users(enabled)
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply()
    for upn in list(users)[:disabled]:
        users[upn]["license"] = False
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    ws.apply()
    assert [m.type for m in ws.mails()[enabled:]] == ["disabled"] * disabled


# --- mass-email guard ------------------------------------------------------------------------


def adopted(ws: Workspace, users: dict[str, dict]) -> dict[str, dict]:
    """A tenant imported (no email) with ``users``."""
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    assert ws.run("import").code == 0
    return users


def test_an_edit_that_emails_most_of_an_adopted_tenant_is_refused_until_allowed(
    workspace: Workspace,
) -> None:
    """Every conference ID changed after import: 12 details-changed emails to 12 users. The
    plan says so first, in every format; apply refuses in one line, changing nothing; the flag
    (or its environment variable) lets the deliberate change through."""
    ws = workspace
    users = adopted(ws, enabled_users(12))
    for number, user in enumerate(users.values()):
        user["conference_id"] = f"{7100000 + number}"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    warning = (
        "12 of 12 users would get an email (over 10%); apply refuses without --allow-mass-email"
    )

    text = ws.run("plan").stdout
    assert text.splitlines()[0] == f"! contoso: {warning}", text
    assert f"> :no_entry: **contoso**: {warning}" in ws.run("plan", "--format", "markdown").stdout
    (tenant,) = ws.plan_json()["tenants"]
    assert tenant["mass_email"] is True and tenant["warnings"][0] == warning
    before = ws.state_show()

    refused = ws.apply(expect=1)
    (line,) = refused.stderr.splitlines()
    assert "email more than 10% of the users of contoso (12 of 12 users)" in line
    assert "--allow-mass-email" in line and "Traceback" not in refused.output
    assert ws.state_show() == before and ws.mails() == []

    env_allowed = ws.apply(env={"RECONCILER_ALLOW_MASS_EMAIL": "1"}, expect=None)
    assert env_allowed.code == 0, str(env_allowed)
    assert [m.type for m in ws.mails()] == ["details-changed"] * 12

    for user in users.values():
        user["pin_reset"] = "2026-12-07"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    assert ws.apply(expect=1) and len(ws.mails()) == 12
    ws.apply("--allow-mass-email")
    assert [m.type for m in ws.mails()[12:]] == ["pin-reset"] * 12


def test_an_export_adopted_unlicensed_then_licensed_is_refused_as_a_mass_email(
    workspace: Workspace,
) -> None:
    """The first-hour trap: a tenant imported with `license: false` everywhere, then the one
    obvious fix, `license: true`, would send every user a new PIN."""
    ws = workspace
    users = adopted(
        ws, {upn: {**user, "license": False} for upn, user in enabled_users(12).items()}
    )
    for user in users.values():
        user["license"] = True
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    refused = ws.apply(expect=1)
    assert "(12 of 12 users)" in refused.stderr and "--allow-mass-email" in refused.stderr
    assert ws.mails() == []


def test_an_allowed_mass_disable_needs_no_mass_email_flag(workspace: Workspace) -> None:
    ws = workspace
    users = adopted(ws, enabled_users(10))
    for user in list(users.values())[:2]:
        user["license"] = False
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    refused = ws.apply(expect=1)
    assert "--allow-mass-disable" in refused.stderr
    assert "--allow-mass-email" not in refused.stderr
    ws.apply("--allow-mass-disable")
    assert [m.type for m in ws.mails()] == ["disabled"] * 2


def test_a_tenth_of_the_users_is_not_a_mass_email(workspace: Workspace) -> None:
    ws = workspace
    users = adopted(ws, enabled_users(10))
    next(iter(users.values()))["pin_reset"] = "2026-12-07"
    write_tenant(ws.config, "contoso", tenant_doc(), users)
    assert "refuses" not in ws.run("plan").stdout
    ws.apply()
    assert [m.type for m in ws.mails()] == ["pin-reset"]


def strip(files: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Users files as :func:`write_tenant` takes them (paths relative to ``users/``)."""
    return {path.removeprefix("users/"): users for path, users in files.items()}


# --- PINs never leak -------------------------------------------------------------------------

PIN_LENGTH = 12  # long enough that a PIN found in a file cannot be a coincidence


def pin_scenario(ws: Workspace, dead_url: str) -> tuple[list[Result], list[str], bytes | None]:
    """Enabled users whose emails are first queued (server down), then delivered; then PIN
    resets. Returns every CLI result, every PIN delivered, and the SQLite file as it was while
    the first PINs were still queued (None for a database URL)."""
    users = enabled_users(3)
    users["odd@contoso.com"] = user_doc("7100000", license=False)
    write_tenant(ws.config, "contoso", tenant_doc(pin_length=PIN_LENGTH), users)
    results = [ws.run("plan", "--out", str(ws.root / "saved.plan"))]
    results.append(
        ws.apply(mail=dead_url, expect=1, env={"RECONCILER_DEFAULT_FROM": "deploy@example.org"})
    )
    assert "3 email(s) still queued" in results[-1].stderr, str(results[-1])
    database = state_file(ws.state)
    queued_snapshot = database.read_bytes() if database is not None else None
    results.append(ws.apply())
    for user in users.values():
        user["pin_reset"] = "2026-11-29"
    users["odd@contoso.com"].update(license=True, pin_reset=None)
    write_tenant(ws.config, "contoso", tenant_doc(pin_length=PIN_LENGTH), users)
    results += [ws.run("plan", "--format", fmt) for fmt in ("text", "markdown", "json")]
    results.append(ws.run("plan", "--out", str(ws.root / "saved2.plan")))
    results.append(ws.run("apply", str(ws.root / "saved2.plan")))
    results += [ws.run("state", "show"), ws.run("history"), ws.run("history", "--format", "json")]
    assert all(r.code == 0 for r in results[2:]), "\n".join(map(str, results))
    pins = [pin for mail in ws.mails() for pin in mail.pins]
    assert len(pins) == 3 + 4 and all(len(p) == PIN_LENGTH for p in pins)
    return results, pins, queued_snapshot


def test_pins_never_appear_in_output_plans_state_or_history(
    workspace: Workspace, dead_smtp_url: str
) -> None:
    ws = workspace
    results, pins, _ = pin_scenario(ws, dead_smtp_url)
    texts = {
        f"{' '.join(r.argv[:2])} ({stream})": getattr(r, stream)
        for r in results
        for stream in ("stdout", "stderr")
    }
    texts["saved plan"] = (ws.root / "saved.plan").read_text(encoding="utf-8")
    texts["saved plan 2"] = (ws.root / "saved2.plan").read_text(encoding="utf-8")
    for where, text in texts.items():
        for pin in pins:
            assert pin not in text, f"a PIN in {where}"
    state = json.loads(results[-3].stdout)
    assert {m["status"] for m in state["tenants"][0]["outbox"]} == {"delivered"}


def test_pins_are_erased_from_the_sqlite_file_once_delivered(
    new_workspace: NewWorkspace, sqlite_location: str, dead_smtp_url: str
) -> None:
    database = state_file(sqlite_location)
    assert database is not None
    ws = new_workspace(sqlite_location)
    _, pins, queued_snapshot = pin_scenario(ws, dead_smtp_url)
    assert queued_snapshot is not None
    first = pins[:3]
    assert all(pin.encode() in queued_snapshot for pin in first), (
        "control: while queued, the outbox holds the message (PIN included), and this scan finds it"
    )
    for path in database.parent.rglob("*"):
        if path.is_file() and "suppressed" not in path.parts:
            data = path.read_bytes()
            for pin in pins:
                assert pin.encode() not in data, f"a delivered PIN is still in {path}"


# --- private files ---------------------------------------------------------------------------


def test_sqlite_state_file_is_private(new_workspace: NewWorkspace, sqlite_location: str) -> None:
    database = state_file(sqlite_location)
    assert database is not None
    ws = new_workspace(sqlite_location)
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(1))
    # the most permissive umask must not matter
    result = ws.run("apply", "--auto-approve", umask=0)
    assert result.code == 0, str(result)
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    for mail in ws.mails():
        assert stat.S_IMODE(mail.path.stat().st_mode) == 0o600  # type: ignore[union-attr]


# --- a failure while composing ----------------------------------------------------------------


def test_a_failure_composing_one_tenant_rolls_it_back_and_sends_nothing(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages are composed inside each tenant's commit: when fabrikam's break half-way, its
    transaction is rolled back, contoso (committed before it) keeps its messages queued, and
    nothing is sent; the next apply delivers contoso's and applies fabrikam, each email once."""
    from reconciler import apply as apply_flow

    ws = workspace
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(3))
    write_tenant(ws.config, "fabrikam", tenant_doc(), enabled_users(3, domain="fabrikam.com"))
    real = apply_flow.compose_messages

    def breaks_for_fabrikam(templates, plan, *args, **kwargs):
        messages = real(templates, plan, *args, **kwargs)
        if plan.name != "fabrikam":
            return messages

        def two_then_broken():
            yield from itertools.islice(messages, 2)
            raise UserError("fabrikam: u002@fabrikam.com: the template broke; nothing was sent")

        return two_then_broken()

    monkeypatch.setattr(apply_flow, "compose_messages", breaks_for_fabrikam)
    result = ws.apply(expect=1)
    assert result.stderr.strip() == (
        "error: fabrikam: u002@fabrikam.com: the template broke; nothing was sent; already "
        "applied: contoso (serial 1), their emails queued for the next apply"
    )
    assert ws.tenant_state("fabrikam") is None
    contoso = ws.tenant_state("contoso")
    assert contoso is not None and [m["status"] for m in contoso["outbox"]] == ["queued"] * 3
    assert not ws.maildir.exists() or not any(ws.maildir.rglob("new/*"))

    monkeypatch.setattr(apply_flow, "compose_messages", real)
    ws.apply()
    mails = read_maildir(ws.maildir)
    assert sorted(m.to for m in mails) == sorted(
        [f"u{i:03d}@contoso.com" for i in range(3)] + [f"u{i:03d}@fabrikam.com" for i in range(3)]
    )


@pytest.mark.parametrize("packed", [False, True], ids=["loose-ref", "packed-refs"])
def test_a_saved_plan_records_the_commit_it_was_made_from(
    workspace: Workspace, packed: bool
) -> None:
    ws = workspace
    write_tenant(ws.config, "contoso", tenant_doc(), enabled_users(1))

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=ws.root,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "tenants")
    git("commit", "-q", "-m", "config")
    if packed:
        git("pack-refs", "--all")
    assert ws.run("plan", "--out", "made.plan").code == 0
    commit = json.loads((ws.root / "made.plan").read_text(encoding="utf-8"))["source"]["commit"]
    assert commit == git("rev-parse", "HEAD")
    write_tenant(ws.config, "contoso", tenant_doc(pin_length=6), enabled_users(1))
    refused = ws.run("apply", "made.plan")
    assert f"(made from commit {commit[:12]})" in refused.stderr, str(refused)


def test_another_tenants_apply_runs_while_a_large_first_apply_composes(
    new_workspace: NewWorkspace,
) -> None:
    """The large apply writes its messages in short transactions before the one that commits
    its state: SQLite's database-wide write lock is free between them, so another tenant's
    apply on the same file goes through at once instead of failing as "database is locked"
    (PostgreSQL locks rows, never the whole database)."""
    ws = new_workspace(mode="process")
    write_tenant(ws.config, "big", tenant_doc(), enabled_users(1500, domain="big.com"))
    write_tenant(ws.config, "small", tenant_doc(), enabled_users(2, domain="small.com"))
    large = ws.spawn("apply", "--auto-approve", "--allow-new-state", "--tenant", "big")
    deadline = time.monotonic() + patience(120)
    while not _composing(ws.state, "big"):
        assert large.alive() and time.monotonic() < deadline, "never seen composing"
        time.sleep(0.05)
    started = time.monotonic()
    small = ws.run("apply", "--auto-approve", "--tenant", "small", timeout=60)
    assert small.code == 0, str(small)
    assert time.monotonic() - started < patience(20), "waited for the other apply"
    assert _composing(ws.state, "big"), "the large apply was still composing meanwhile"
    assert large.wait(120).code == 0
    mails = read_maildir(ws.maildir)
    assert Counter(m.tenant for m in mails) == {"big": 1500, "small": 2}
    assert len({m.message_id for m in mails}) == 1502


def _composing(state: str, tenant: str) -> bool:
    """Messages of ``tenant`` are in the outbox and its state is not committed yet."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
        ) as db:
            staged = db.execute("SELECT count(*) FROM outbox WHERE tenant = ?", (tenant,))
            committed = db.execute("SELECT count(*) FROM tenants WHERE name = ?", (tenant,))
            return staged.fetchone()[0] > 0 and committed.fetchone()[0] == 0
    except sqlite3.OperationalError:  # no file or no tables yet
        return False
