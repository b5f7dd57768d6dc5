"""Regressions found in review: user errors that ended in a traceback (or exit 0), an address
accepted by validate that apply could not email, and import overwriting state an apply had
just written."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import pytest
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
    (root / "st").mkdir()
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
