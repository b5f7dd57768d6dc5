"""``reconciler state migrate --to``: SQLite → PostgreSQL and back, exactly, never over an
existing state without ``--force``."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from reconciler.errors import UserError
from reconciler.messages import NewMessage
from reconciler.state import Commit, StateStore, open_store
from reconciler.state.migrate import migrate
from tests.helpers.cli import Result
from tests.helpers.tenants import copy_example
from tests.helpers.workspace import NewWorkspace, Workspace


@pytest.fixture
def ws(new_workspace: NewWorkspace) -> Workspace:
    """The CLI on this folder's configuration and Maildir; each command names its state."""
    return new_workspace()


def cli(ws: Workspace, command: list[str], state: str) -> Result:
    return ws.run(*command, state=state, timeout=120)


@pytest.fixture
def locations(sqlite_location: str, postgres_url: str) -> dict[str, str]:
    return {"sqlite": sqlite_location, "postgresql": postgres_url}


def message(n: int, user: str) -> NewMessage:
    return NewMessage(
        user,
        "pin-reset",
        f"<migrate-{n}@contoso.reconciler>",
        "it@contoso.com",
        [user],
        f"Subject: PIN {n}\r\nMessage-ID: <migrate-{n}@contoso.reconciler>"
        f"\r\n\r\nYour new PIN is 4711{n:02d}\r\n".encode(),
        False,
    )


def populate(store: StateStore, name: str, lineage: str) -> None:
    """Two serials, users, history, and an outbox with delivered, failed and queued messages."""
    users = {
        f"user{i}@contoso.com": {
            "upn": f"user{i}@contoso.com",
            "license": True,
            "display_name": f"Usér {i}",
            "n": i,
        }
        for i in range(5)
    }
    store.commit(
        name,
        (None, 0),
        Commit(
            {"settings": {"pin_length": 6}, "z": [1, "a"]},
            users,
            [],
            {"tenant.yaml": "h1"},
            [message(1, "user1@contoso.com"), message(2, "user2@contoso.com")],
            lineage,
        ),
    )
    store.commit(
        name,
        (lineage, 1),
        Commit(
            {"settings": {"pin_length": 7}},
            {},
            ["user4@contoso.com"],
            {"tenant.yaml": "h2"},
            [message(3, "user3@contoso.com")],
            "x",
            kind="apply",
        ),
    )
    store.mark_delivered("<migrate-1@contoso.reconciler>")
    store.mark_failed("<migrate-2@contoso.reconciler>", "550 no such user")


def dumps(store: StateStore) -> dict[str, object]:
    return {name: store.export(name) for name in store.tenants()}


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgresql"), ("postgresql", "sqlite")])
def test_migrate_copies_everything_exactly(
    ws: Workspace, locations: dict[str, str], source: str, target: str
) -> None:
    src, dst = locations[source], locations[target]
    store = open_store(src)
    populate(store, "contoso", "lineage-c")
    original = dumps(store)
    store.close()
    shown = cli(ws, ["state", "show"], src)
    done = cli(ws, ["state", "migrate", "--to", dst], src)
    assert done.code == 0, done.stderr
    assert "Copied 1 tenant(s) (contoso)" in done.stdout
    assert "4 user(s), 3 outbox message(s) (1 still queued), 2 history entries" in done.stdout
    copied = open_store(dst)
    try:
        assert dumps(copied) == original  # state, users, outbox rows, queued bodies, history
        queued = list(copied.queued("contoso"))
        assert [m.message_id for m in queued] == ["<migrate-3@contoso.reconciler>"]
        assert b"Your new PIN is 471103" in queued[0].data
    finally:
        copied.close()
    assert cli(ws, ["state", "show"], dst).stdout == shown.stdout
    again = open_store(src)  # the source is unchanged
    try:
        assert dumps(again) == original
    finally:
        again.close()


def test_round_trip_and_the_next_apply_delivers_what_was_queued(
    ws: Workspace, sqlite_location: str, postgres_url: str
) -> None:
    copy_example(ws.config, "contoso")
    imported = cli(ws, ["import"], sqlite_location)
    assert imported.code == 0, imported.stderr
    store = open_store(sqlite_location)
    applied = store.load("contoso")
    assert applied is not None
    store.commit(
        "contoso",
        (applied.lineage, applied.serial),
        Commit(
            applied.tenant,
            {},
            [],
            applied.files,
            [message(7, "alice@contoso.com")],
            applied.lineage,
        ),
    )
    store.close()
    moved = cli(ws, ["state", "migrate", "--to", postgres_url], sqlite_location)
    assert moved.code == 0, moved.stderr
    (ws.root / "back").mkdir()
    back_location = str(ws.root / "back" / "state.db")
    back = open_store(back_location)
    source, target = open_store(sqlite_location), open_store(postgres_url)
    try:
        migrate(target, back)
        assert dumps(back) == dumps(source) == dumps(target)
    finally:
        source.close()
        back.close()
        target.close()
    for left_behind in (sqlite_location, postgres_url):
        refused = cli(ws, ["apply", "--auto-approve"], left_behind)
        assert refused.code == 1 and "contoso was migrated from" in refused.stderr, str(refused)
    delivered = cli(ws, ["apply", "--auto-approve"], back_location)
    assert delivered.code == 0, delivered.stderr
    assert "1 email(s) delivered" in delivered.stdout
    (sent,) = mailbox.Maildir(ws.maildir, create=False)
    assert sent["Message-ID"] == "<migrate-7@contoso.reconciler>"
    back = open_store(back_location)
    try:
        assert [m["status"] for m in back.messages("contoso")] == ["delivered"]
        assert list(back.queued("contoso")) == []
    finally:
        back.close()


def test_a_migrated_source_is_kept_as_a_record_and_never_sends_its_queue_again(
    ws: Workspace, locations: dict[str, str], dead_smtp_url: str
) -> None:
    """The attack: migrate, then an old pipeline still applies against the source: its queued
    PIN emails would go out a second time."""
    copy_example(ws.config, "contoso")
    src, dst = locations["sqlite"], locations["postgresql"]
    queued = ws.run(
        "apply", "--auto-approve", "--default-from", "it@contoso.com", state=src, mail=dead_smtp_url
    )
    assert queued.code == 1 and "still queued" in queued.stderr, str(queued)
    assert cli(ws, ["state", "migrate", "--to", dst], src).code == 0
    for command in (["apply", "--auto-approve"], ["import", "--force"]):
        refused = cli(ws, command, src)
        assert refused.code == 1 and "Traceback" not in refused.output
        (line,) = refused.stderr.splitlines()
        assert "contoso was migrated from" in line and "point --state at the new state" in line
    assert not ws.maildir.exists()
    delivered = cli(ws, ["apply", "--auto-approve"], dst)
    assert delivered.code == 0 and "4 email(s) delivered" in delivered.stdout, str(delivered)
    again = cli(ws, ["state", "migrate", "--to", str(ws.root / "other.db")], src)
    assert again.code == 1 and "already migrated" in again.stderr


@pytest.mark.parametrize("target_backend", ["sqlite", "postgresql"])
def test_a_non_empty_target_needs_force(
    ws: Workspace, locations: dict[str, str], target_backend: str
) -> None:
    dst = locations[target_backend]
    src = locations["postgresql" if target_backend == "sqlite" else "sqlite"]
    with_source = open_store(src)
    populate(with_source, "contoso", "new-lineage")
    with_source.close()
    existing = open_store(dst)
    existing.commit("contoso", (None, 0), Commit({"old": True}, {}, [], {}, [], "old-lineage"))
    existing.commit("fabrikam", (None, 0), Commit({"other": True}, {}, [], {}, [], "f"))
    before = dumps(existing)
    existing.close()

    refused = cli(ws, ["state", "migrate", "--to", dst], src)
    assert refused.code == 1
    assert refused.stderr.splitlines() == [
        f"error: {dst} already holds state (contoso, fabrikam); refusing to overwrite it (pass "
        "--force to replace the copied tenants there); nothing was copied"
    ]
    target = open_store(dst)
    assert dumps(target) == before
    target.close()

    forced = cli(ws, ["state", "migrate", "--to", dst, "--force"], src)
    assert forced.code == 0, forced.stderr
    assert "Replaced the previous state of contoso there (its history kept)." in forced.stdout
    assert "Left fabrikam there as it was." in forced.stdout
    target, source = open_store(dst), open_store(src)
    try:
        copied, original = target.export("contoso"), source.export("contoso")
        assert copied is not None and original is not None
        old = before["contoso"].history  # type: ignore[union-attr]
        assert copied.history == [*old, *original.history], "the target's history is kept"
        assert (copied.applied, copied.outbox) == (original.applied, original.outbox)
        assert target.export("fabrikam") == before["fabrikam"]
    finally:
        target.close()
        source.close()


def test_forcing_over_a_tenant_with_queued_mail_needs_drop_queued(
    ws: Workspace, locations: dict[str, str]
) -> None:
    src, dst = locations["sqlite"], locations["postgresql"]
    source = open_store(src)
    populate(source, "contoso", "new-lineage")
    source.close()
    target = open_store(dst)
    target.commit(
        "contoso", (None, 0), Commit({"old": True}, {}, [], {}, [message(9, "a@contoso.com")], "o")
    )
    before = dumps(target)
    target.close()

    refused = cli(ws, ["state", "migrate", "--to", dst, "--force"], src)
    assert refused.code == 1
    assert refused.stderr.splitlines() == [
        f"error: {dst} still has email queued for contoso (1): run apply against it to "
        "deliver them, or pass --drop-queued (they would never be sent); nothing was copied"
    ]
    target = open_store(dst)
    assert dumps(target) == before
    target.close()
    dropped = cli(ws, ["state", "migrate", "--to", dst, "--force", "--drop-queued"], src)
    assert dropped.code == 0 and "1 queued email(s) dropped" in dropped.stdout, str(dropped)


def test_refusals(tmp_path: Path, sqlite_location: str, postgres_url: str) -> None:
    empty = open_store(postgres_url)
    source = open_store(sqlite_location)
    try:
        with pytest.raises(UserError, match="holds no state; nothing was copied"):
            migrate(source, empty)
        populate(source, "contoso", "l")
        with pytest.raises(UserError, match="is the source state itself"):
            migrate(source, source)
        alias = open_store(str(Path(sqlite_location).parent / "." / "state.db"))
        with pytest.raises(UserError, match="is the source state itself"):
            migrate(source, alias)
        alias.close()
        with pytest.raises(UserError, match="fabrikam: no state in"):
            migrate(source, empty, only=("fabrikam",))
        with source.lock("contoso"), pytest.raises(UserError, match="contoso: state locked by"):
            migrate(source, empty)
        assert empty.tenants() == []
    finally:
        empty.close()
        source.close()
