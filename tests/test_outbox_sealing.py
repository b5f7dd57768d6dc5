"""A PostgreSQL state never holds a PIN in clear: queued bodies are sealed with
``RECONCILER_OUTBOX_KEY`` before they reach the server (whose write-ahead log, archives and
backups keep what they are given), opened after they are read, and a missing or wrong key
stops delivery in one line with nothing sent twice."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reconciler.errors import UserError
from reconciler.state import SealBroken, open_store
from reconciler.state.sealing import ENV, MAGIC, OutboxKeys, binding, new_key, open_body
from tests.fixtures.state import PostgresServer
from tests.helpers.cli import TEST_ENV, Result
from tests.helpers.mail import copies_by_message_id, read_maildir
from tests.helpers.schema import set_schema_version
from tests.helpers.tenants import copy_example
from tests.helpers.workspace import NewWorkspace, Workspace

EXAMPLE_EMAILS = 4  # the example tenant's first apply: four "enabled" emails, each with a PIN
OTHER_KEY = new_key()[0]


def keys(*values: str) -> OutboxKeys:
    found = OutboxKeys.from_env({ENV: " ".join(values)})
    assert found is not None
    return found


# --- the keys -----------------------------------------------------------------------------------


ROW = binding("<a@reconciler>", "noreply@contoso.com", ["alice@contoso.com"])


def test_a_sealed_body_opens_with_its_key_and_for_its_own_row_only() -> None:
    mine, other = keys(TEST_ENV[ENV]), keys(OTHER_KEY)
    sealed = mine.seal(ROW, b"Subject: PIN 12345\r\n\r\nbody")
    assert sealed.startswith(MAGIC) and b"12345" not in sealed
    assert open_body(mine, "<a@reconciler>", ROW, sealed) == b"Subject: PIN 12345\r\n\r\nbody"
    for row in (
        binding("<b@reconciler>", "noreply@contoso.com", ["alice@contoso.com"]),
        binding("<a@reconciler>", "noreply@contoso.com", ["mallory@example.com"]),
        binding("<a@reconciler>", "mallory@example.com", ["alice@contoso.com"]),
    ):
        with pytest.raises(SealBroken, match="belongs to another message"):
            open_body(mine, "<a@reconciler>", row, sealed)
    with pytest.raises(SealBroken, match=f"sealed with outbox key {mine.fingerprint}, which"):
        open_body(other, "<a@reconciler>", ROW, sealed)
    with pytest.raises(SealBroken, match="it is not set"):
        open_body(None, "<a@reconciler>", ROW, sealed)


@pytest.mark.parametrize(
    "cut",
    [len(MAGIC), len(MAGIC) + 9, len(MAGIC) + 20, -1],
    ids=["the mark alone", "no nonce", "no tag", "one byte short"],
)
def test_a_cut_or_malformed_sealed_body_is_one_line_naming_no_made_up_key(cut: int) -> None:
    mine = keys(TEST_ENV[ENV])
    sealed = mine.seal(ROW, b"body")
    for broken in (sealed[:cut], MAGIC + b"\x1b[2J:" + sealed[len(MAGIC) + 9 :]):
        with pytest.raises(SealBroken) as caught:
            open_body(mine, "<a@reconciler>", ROW, broken)
        assert "cut or altered" in str(caught.value) and "\x1b" not in str(caught.value)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old = keys(OTHER_KEY).seal(ROW, b"old")
    rotated = keys(TEST_ENV[ENV], OTHER_KEY)
    assert rotated.fingerprint == keys(TEST_ENV[ENV]).fingerprint
    assert open_body(rotated, "<a@reconciler>", ROW, old) == b"old"
    new = rotated.seal(ROW, b"new")
    assert open_body(keys(TEST_ENV[ENV]), "<a@reconciler>", ROW, new) == b"new"


def test_a_body_queued_before_sealing_existed_reads_as_it_is() -> None:
    clear = b"MIME-Version: 1.0\r\n"
    assert open_body(None, "<a@reconciler>", ROW, clear) == clear


@pytest.mark.parametrize(
    "value",
    ["", "  \n", f"$({ENV})"],
    ids=["empty", "blank", "an unset Azure DevOps variable"],
)
def test_no_key_is_no_key(value: str) -> None:
    assert OutboxKeys.from_env({ENV: value}) is None
    assert OutboxKeys.from_env({}) is None


@pytest.mark.parametrize(
    "value",
    [
        "hunter2-secret",
        base64.urlsafe_b64encode(b"x" * 16).decode(),
        f"{new_key()[0]},not\x1b[31mkey",
        f'"{new_key()[0]}"',
    ],
    ids=["not base64", "16 bytes", "second key broken", "quoted"],
)
def test_a_malformed_key_is_one_line_that_never_echoes_it(value: str) -> None:
    with pytest.raises(UserError) as caught:
        OutboxKeys.from_env({ENV: value})
    message = str(caught.value)
    assert message.startswith(f"{ENV}: key ") and "\n" not in message
    assert all(part not in message for part in value.split(",") if part)


def test_new_key_makes_a_fresh_key_the_reconciler_accepts(workspace_cli: Workspace) -> None:
    first, second = (workspace_cli.cli("state", "new-key") for _ in range(2))
    assert first.code == second.code == 0, str(first)
    assert first.stdout != second.stdout
    found = OutboxKeys.from_env({ENV: first.stdout.strip()})
    assert found is not None and found.fingerprint in first.stderr


@pytest.fixture
def workspace_cli(new_workspace: NewWorkspace) -> Workspace:
    return new_workspace()


# --- against a real PostgreSQL server -----------------------------------------------------------


@pytest.fixture
def ws(new_workspace: NewWorkspace, postgres_url: str) -> Workspace:
    ws = new_workspace(postgres_url)
    copy_example(ws.config, "contoso")
    return ws


def outbox(url: str) -> list[tuple[str, str, bytes | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT message_id, status, data FROM reconciler_outbox ORDER BY id"
        ).fetchall()
    return [(m, s, None if d is None else bytes(d)) for m, s, d in rows]


def row_of(url: str, message_id: str) -> bytes:
    """What a row's sealed body is bound to, read from the row itself."""
    with psycopg.connect(url) as conn:
        sender, recipients = conn.execute(
            "SELECT sender, recipients FROM reconciler_outbox WHERE message_id = %s", (message_id,)
        ).fetchone()
    return binding(message_id, sender, recipients)


def one_line_error(result: Result, *words: str) -> str:
    assert result.code == 1, str(result)
    assert "Traceback" not in result.output, str(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), str(result)
    return errors[0]


@pytest.fixture
def wal(postgres_server: PostgresServer, postgres_url: str) -> Iterator[WriteAheadLog]:
    log = WriteAheadLog(postgres_server, postgres_url)
    yield log


class WriteAheadLog:
    """The server's WAL segments written since the test began, searched on the server.

    Bodies are stored uncompressed (``STORAGE EXTERNAL``, as a server may be configured): what
    the outbox is given is what the log holds, byte for byte."""

    def __init__(self, server: PostgresServer, url: str):
        self.server = server
        open_store(url).close()  # the tables
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE reconciler_outbox ALTER COLUMN data SET STORAGE EXTERNAL")
        with server.admin() as admin:
            self.first = admin.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]

    def holds(self, needle: bytes) -> bool:
        with self.server.admin() as admin:
            admin.execute("SELECT pg_switch_wal()")  # the segment so far, complete on disk
            last = admin.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            row = admin.execute(
                "SELECT count(*) FROM pg_ls_waldir() w WHERE w.name BETWEEN %s AND %s"
                " AND w.name ~ '^[0-9A-F]{24}$'"
                " AND position(%s::bytea IN pg_read_binary_file('pg_wal/' || w.name)) > 0",
                (self.first, last, needle),
            ).fetchone()
        return bool(row and row[0])


def pin_lines(maildir: Path) -> list[bytes]:
    """The raw lines (as the composed message holds them) that carry each delivered PIN."""
    lines = []
    for mail in read_maildir(maildir):
        raw = mail.path.read_bytes() if mail.path else b""
        for pin in mail.pins:
            digits = pin.split()[-1].encode()
            lines += [line for line in raw.splitlines() if digits in line and len(line) > 12]
    return lines


def test_no_pin_reaches_the_postgresql_server(ws: Workspace, wal: WriteAheadLog) -> None:
    ws.apply("--max-messages", "1", expect=3)
    rows = outbox(ws.state)
    queued = [data for _, status, data in rows if status == "queued"]
    assert len(queued) == EXAMPLE_EMAILS - 1
    assert all(d is not None and d.startswith(MAGIC) and b"MIME-Version" not in d for d in queued)
    ws.apply()
    lines = pin_lines(ws.maildir)
    assert len(read_maildir(ws.maildir)) == EXAMPLE_EMAILS and len(lines) >= EXAMPLE_EMAILS
    assert wal.holds(b"reconciler-sealed:1:")  # the search sees what was written
    assert [line for line in lines if wal.holds(line)] == []


def test_postgresql_refuses_to_queue_email_without_an_outbox_key(ws: Workspace) -> None:
    result = ws.run("apply", "--auto-approve", env={ENV: None})
    one_line_error(result, ENV, "reconciler state new-key", "nothing was")
    assert ws.state_show()["tenants"] == [] and outbox(ws.state) == []
    assert not ws.maildir.exists() or read_maildir(ws.maildir) == []
    ws.apply()
    assert ws.apply(env={ENV: None}).code == 0  # nothing to queue: no key needed


def test_a_queue_sealed_with_a_key_no_longer_given_stops_in_one_line(ws: Workspace) -> None:
    ws.apply("--max-messages", "1", expect=3)
    sealed_with = keys(TEST_ENV[ENV]).fingerprint
    lost = ws.run("apply", "--auto-approve", env={ENV: OTHER_KEY})
    line = one_line_error(lost, sealed_with, ENV)
    assert TEST_ENV[ENV] not in line and OTHER_KEY not in lost.output
    assert len(read_maildir(ws.maildir)) == 1
    ws.apply(env={ENV: f"{OTHER_KEY} {TEST_ENV[ENV]}"})
    mails = read_maildir(ws.maildir)
    assert len(mails) == EXAMPLE_EMAILS and set(copies_by_message_id(mails).values()) == {1}


def test_a_sealed_body_moved_to_another_message_is_refused(ws: Workspace) -> None:
    ws.apply("--max-messages", "1", expect=3)
    (first, _, a), (second, _, b) = [r for r in outbox(ws.state) if r[1] == "queued"][:2]
    with psycopg.connect(ws.state, autocommit=True) as conn:
        for message_id, data in ((first, b), (second, a)):
            conn.execute(
                "UPDATE reconciler_outbox SET data = %s WHERE message_id = %s", (data, message_id)
            )
    one_line_error(ws.run("apply", "--auto-approve"), first, "altered")
    assert len(read_maildir(ws.maildir)) == 1


def test_bodies_queued_before_sealing_existed_still_go_out(ws: Workspace) -> None:
    ws.apply("--max-messages", "1", expect=3)
    mine = keys(TEST_ENV[ENV])
    with psycopg.connect(ws.state, autocommit=True) as conn:
        for message_id, status, data in outbox(ws.state):
            if status == "queued" and data is not None:
                conn.execute(
                    "UPDATE reconciler_outbox SET data = %s WHERE message_id = %s",
                    (open_body(mine, message_id, row_of(ws.state, message_id), data), message_id),
                )
    ws.apply(env={ENV: None})
    mails = read_maildir(ws.maildir)
    assert len(mails) == EXAMPLE_EMAILS and set(copies_by_message_id(mails).values()) == {1}


def test_migrating_a_queue_seals_it_into_postgresql_and_opens_it_out(
    new_workspace: NewWorkspace, postgres_url: str, sqlite_location: str
) -> None:
    ws = new_workspace()
    copy_example(ws.config, "contoso")
    ws.apply("--max-messages", "1", expect=3)
    assert ws.run("state", "migrate", "--to", postgres_url).code == 0
    queued = [d for _, s, d in outbox(postgres_url) if s == "queued"]
    assert len(queued) == EXAMPLE_EMAILS - 1 and all(d and d.startswith(MAGIC) for d in queued)
    back = ws.cli("state", "migrate", "--state", postgres_url, "--to", sqlite_location)
    assert back.code == 0, str(back)
    dataclasses.replace(ws, state=sqlite_location).apply(env={ENV: None})
    mails = read_maildir(ws.maildir)
    assert len(mails) == EXAMPLE_EMAILS and set(copies_by_message_id(mails).values()) == {1}


def cut(url: str, message_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE reconciler_outbox SET data = substring(data FROM 1 FOR 40)"
            " WHERE message_id = %s",
            (message_id,),
        )


def test_a_body_cut_in_the_database_stops_its_tenant_and_the_others_still_go_out(
    new_workspace: NewWorkspace, postgres_url: str
) -> None:
    ws = new_workspace(postgres_url)
    copy_example(ws.config, "alpha", "beta")
    ws.apply("--max-messages", "1", expect=3)
    with psycopg.connect(ws.state) as conn:
        queued_alpha = [
            m
            for (m,) in conn.execute(
                "SELECT message_id FROM reconciler_outbox WHERE tenant = 'alpha'"
                " AND status = 'queued' ORDER BY id"
            )
        ]
    cut(ws.state, queued_alpha[1])  # the oldest still opens: delivery starts, then stops there
    result = ws.run("apply", "--auto-approve")
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert "not attempted" in result.stderr and "cut or altered" in result.stderr
    left = [m for m, s, _ in outbox(ws.state) if s == "queued"]
    assert left == queued_alpha[1:], "alpha up to the cut body, then all of beta"
    mails = read_maildir(ws.maildir)
    assert len(mails) == 2 * EXAMPLE_EMAILS - len(left)
    assert set(copies_by_message_id(mails).values()) == {1}


def test_a_queue_whose_key_is_missing_refuses_the_apply_before_it_changes_anything(
    ws: Workspace,
) -> None:
    ws.apply("--max-messages", "1", expect=3)
    tenant = ws.config / "contoso" / "tenant.yaml"
    tenant.write_text(
        tenant.read_text(encoding="utf-8").replace(
            "enable_name_recording: true", "enable_name_recording: false"
        ),
        encoding="utf-8",
    )
    refused = ws.run("apply", "--auto-approve", env={ENV: None})
    one_line_error(refused, keys(TEST_ENV[ENV]).fingerprint, "it is not set")
    assert ws.tenant_state("contoso")["serial"] == 1, "the setting was not applied"
    ws.apply()
    assert ws.tenant_state("contoso")["serial"] == 2
    assert len(read_maildir(ws.maildir)) == EXAMPLE_EMAILS


def test_migrating_without_the_key_copies_nothing_either_way(
    new_workspace: NewWorkspace, postgres_url: str, sqlite_location: str
) -> None:
    """Checked before the first tenant is copied: ``aaa`` (all delivered) would otherwise be
    copied and marked migrated before ``contoso``'s queue is refused."""

    def two_tenants(ws: Workspace) -> Workspace:
        ws.apply("--tenant", "aaa")
        ws.apply("--tenant", "contoso", "--max-messages", "1", expect=3)
        return ws

    into = new_workspace()
    copy_example(into.config, "aaa", "contoso")
    two_tenants(into)
    refused = into.run("state", "migrate", "--to", postgres_url, env={ENV: None})
    one_line_error(refused, ENV, "nothing was done")
    assert outbox(postgres_url) == []
    into.apply(env={ENV: None})  # neither tenant was marked migrated in the source

    out = two_tenants(dataclasses.replace(into, state=postgres_url))
    refused = out.cli(
        "state", "migrate", "--state", postgres_url, "--to", sqlite_location, env={ENV: None}
    )
    one_line_error(refused, "it is not set")
    assert not Path(sqlite_location).exists() or open_store(sqlite_location).tenants() == []
    assert out.apply().code == 0  # nor in this one


def test_an_older_reconciler_cannot_take_a_sealed_queue(ws: Workspace) -> None:
    """Schema 6 says the bodies are sealed: a reconciler from before sealing refuses the tables
    (its own schema check) instead of sending the sealed bytes as mail."""
    ws.apply("--max-messages", "1", expect=3)
    with psycopg.connect(ws.state) as conn:
        (version,) = conn.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert version == "6"
    set_schema_version(ws.state, "5")  # a state written by the release before sealing
    ws.apply()
    assert len(read_maildir(ws.maildir)) == EXAMPLE_EMAILS
    with psycopg.connect(ws.state) as conn:
        assert conn.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
        ).fetchone() == ("6",)
