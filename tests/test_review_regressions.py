"""Regressions found in review: user errors that ended in a traceback (or exit 0), an address
accepted by validate that apply could not email, and import overwriting state an apply had
just written."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.state.sqlite import SQLiteStore

TENANT = """\
settings:
  pin_length: 5
bridge:
  numbers:
    - {number: "+14255550100", type: toll}
  default_number: "+14255550100"
"""


def users(key: str = "alice@acme.com") -> str:
    return f'users:\n  {key}:\n    license: true\n    conference_id: "1234567"\n'


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[str]]:
    (tmp_path / "cfg" / "acme").mkdir(parents=True)
    (tmp_path / "cfg" / "acme" / "tenant.yaml").write_text(TENANT)
    (tmp_path / "cfg" / "acme" / "users.yaml").write_text(users())
    (tmp_path / "st").mkdir()
    args = ["--config", str(tmp_path / "cfg"), "--state", str(tmp_path / "st" / "state.db"),
            "--mail", f"maildir:{tmp_path / 'mail'}"]
    return tmp_path, args


def cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result: object, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


@pytest.mark.parametrize("key", ["josé@acme.com", "alice@exämple.com"])
def test_non_ascii_address_is_refused_by_validate_not_crashing_apply(setup, key):
    root, args = setup
    (root / "cfg" / "acme" / "users.yaml").write_text(users(key))
    result = cli("validate", *args[:2])
    assert_one_line_error(result, "acme/users.yaml:2:3:", "ASCII")
    result = cli("apply", "--auto-approve", *args)
    assert_one_line_error(result, "acme/users.yaml:2:3:")
    assert not (root / "mail").exists()


def test_plan_out_to_an_unwritable_place_is_one_line(setup):
    root, args = setup
    result = cli("plan", *args, "--out", str(root / "no" / "such" / "dir" / "x.plan"))
    assert_one_line_error(result, "cannot write saved plan")


@pytest.mark.parametrize("document", [
    '{"kind": "audio-conferencing-reconciler saved plan", "format_version": "1", "plan": {}}',
    '{"kind": "audio-conferencing-reconciler saved plan", "format_version": "1",'
    ' "configs": {"acme": {"tenant": {}}}, "plan": {"tenants": []}}',
    '{"kind": "audio-conferencing-reconciler saved plan", "format_version": "1",'
    ' "configs": [], "plan": {"tenants": []}}',
])
def test_incomplete_saved_plan_is_one_line(setup, document):
    root, args = setup
    (root / "x.plan").write_text(document)
    result = cli("apply", str(root / "x.plan"), *args)
    assert_one_line_error(result, "saved plan")
    assert not (root / "st" / "state.db").exists() or SQLiteStore(
        root / "st" / "state.db").load("acme") is None


def test_validate_of_a_tenant_without_folder_fails(setup):
    _, args = setup
    result = cli("validate", *args[:2], "--tenant", "nosuch")
    assert_one_line_error(result, "nosuch")


def test_import_while_locked_is_one_line(setup):
    root, args = setup
    fd = os.open(root / "st" / "state.db.acme.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = cli("import", *args)
    finally:
        os.close(fd)
    assert_one_line_error(result, "locked")


def test_import_does_not_overwrite_state_an_apply_wrote_after_its_check(setup, monkeypatch):
    """import checks for existing state, then takes the lock: an apply that committed in
    between must not be overwritten without --force."""
    root, args = setup
    original = SQLiteStore.lock

    @contextlib.contextmanager
    def lock_after_an_apply(self, tenant, timeout=0.0):
        monkeypatch.setattr(SQLiteStore, "lock", original)
        assert cli("apply", "--auto-approve", "-q", *args).exit_code == 0
        with original(self, tenant, timeout):
            yield

    monkeypatch.setattr(SQLiteStore, "lock", lock_after_an_apply)
    result = cli("import", *args)
    assert_one_line_error(result, "already has applied state")
    store = SQLiteStore(root / "st" / "state.db")
    assert [h["kind"] for h in store.history("acme")] == ["apply"]


# --- second review round ---------------------------------------------------------------------


def test_an_unknown_key_with_two_letters_swapped_gets_a_hint(setup):
    tmp_path, args = setup
    (tmp_path / "cfg" / "acme" / "users.yaml").write_text(
        'users:\n  alice@acme.com:\n    lisence: true\n    conference_id: "1234567"\n')
    result = CliRunner().invoke(main, ["validate", *args])
    assert result.exit_code == 1
    assert "unknown key 'lisence' (did you mean 'license'?)" in result.stderr


def test_a_symlinked_state_path_shares_the_lock_of_the_real_file(tmp_path: Path):
    real = tmp_path / "state.db"
    store = SQLiteStore(real)
    (tmp_path / "alias.db").symlink_to(real)
    alias = SQLiteStore(tmp_path / "alias.db")
    with store.lock("acme"), pytest.raises(Exception, match="locked by"):
        alias.lock("acme").__enter__()
    store.close()
    alias.close()


def test_the_queue_of_a_tenant_whose_folder_vanished_is_left_alone(setup, dead_smtp_url,
                                                                   smtp_server):
    tmp_path, args = setup
    smtp = [*args[:4], "--mail", dead_smtp_url, "--default-from", "noreply@acme.com",
            "--retry-backoff", "0"]
    result = CliRunner().invoke(main, ["apply", "--auto-approve", *smtp])
    assert result.exit_code == 1 and "1 queued" in result.stdout
    (tmp_path / "cfg" / "acme" / "tenant.yaml").unlink()
    (tmp_path / "cfg" / "acme" / "users.yaml").unlink()
    (tmp_path / "cfg" / "acme").rmdir()
    (tmp_path / "cfg" / "other").mkdir()
    (tmp_path / "cfg" / "other" / "tenant.yaml").write_text(TENANT)
    live = [*args[:4], "--mail", smtp_server.url, "--default-from", "noreply@acme.com"]
    result = CliRunner().invoke(main, ["apply", "--auto-approve", *live])
    assert smtp_server.received == []
    assert "missing from the configuration" in result.stdout
    shown = CliRunner().invoke(main, ["state", "show", *args])
    outbox = next(t for t in json.loads(shown.stdout)["tenants"]
                  if t["name"] == "acme")["outbox"]
    assert [m["status"] for m in outbox] == ["queued"]


class _RefusingSender:
    async def handle_MAIL(self, server, session, envelope, address, options):
        return "550 5.7.1 not allowed to send as this address"


def test_a_refused_sender_keeps_every_message_queued_with_its_pin(setup):
    tmp_path, args = setup
    (tmp_path / "cfg" / "acme" / "users.yaml").write_text(
        users() + '  bob@acme.com:\n    license: true\n    conference_id: "7654321"\n')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(_RefusingSender(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = CliRunner().invoke(main, [
            "apply", "--auto-approve", *args[:4], "--mail", f"smtp://127.0.0.1:{port}",
            "--default-from", "noreply@acme.com", "--retry-backoff", "0"])
    finally:
        controller.stop()
    assert result.exit_code == 1
    assert "2 queued" in result.stdout and "0 failed" in result.stdout
    assert "refused the sender noreply@acme.com" in result.stderr
