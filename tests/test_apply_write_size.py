"""An apply writes what changed, not the whole tenant (SPEC §6, issue 4: 100k-user tenants)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.apply import run_apply
from reconciler.manager import Manager, Options
from reconciler.state import Commit
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.ui import SilentUI


def apply(options: Options, commits: list[Commit], monkeypatch: pytest.MonkeyPatch) -> None:
    manager = Manager(options)
    store_class = type(manager.store)
    real = store_class.commit

    def recording(self, name: str, expected: tuple, change: Commit) -> tuple[str, int]:
        # The messages are composed as the commit consumes them: keep what it wrote.
        change = dataclasses.replace(change, messages=list(change.messages))
        commits.append(change)
        return real(self, name, expected, change)

    monkeypatch.setattr(store_class, "commit", recording)
    try:
        assert run_apply(manager, SilentUI(), auto_approve=True, allow_new_state=True).ok
    finally:
        manager.close()
        monkeypatch.setattr(store_class, "commit", real)


def test_the_state_write_of_an_apply_is_proportional_to_the_change(
    tmp_path: Path, state_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tenants"
    users = enabled_users(300)
    write_tenant(config, "contoso", tenant_doc(), users)
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    first: list[Commit] = []
    apply(options, first, monkeypatch)
    assert len(first[0].upserts) == 300

    users["u007@contoso.com"]["conference_id"] = "7777777"
    del users["u008@contoso.com"]
    write_tenant(config, "contoso", tenant_doc(), users)
    second: list[Commit] = []
    apply(options, second, monkeypatch)
    assert len(second) == 1
    assert list(second[0].upserts) == ["u007@contoso.com"]
    assert second[0].deletes == ["u008@contoso.com"]
    assert [(m.user, m.type) for m in second[0].messages] == [
        ("u007@contoso.com", "details-changed"),
        ("u008@contoso.com", "disabled"),
    ]


def test_an_apply_records_source_files_only_for_files_it_read(
    tmp_path: Path, state_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tenants"
    files = {"a.yaml": enabled_users(50), "b.yaml": enabled_users(50, start=50)}
    write_tenant(config, "contoso", tenant_doc(), user_files=files)
    options = Options(config=config, state=state_location, mail=f"maildir:{tmp_path / 'mail'}")
    first: list[Commit] = []
    apply(options, first, monkeypatch)
    assert len(first[0].sources) == 100

    files["b.yaml"]["u060@contoso.com"]["conference_id"] = "7777777"
    write_tenant(config, "contoso", tenant_doc(), user_files=files)
    second: list[Commit] = []
    apply(options, second, monkeypatch)
    assert list(second[0].upserts) == ["u060@contoso.com"]
    assert set(second[0].sources) == set(files["b.yaml"])  # a.yaml was reused, not read
