"""A saved plan is a file from outside: edited, truncated or crafted, it is refused in one line
before anything in it is used, on both state backends, with nothing written anywhere (no state,
no mail, no suppressed copies outside the state folder), and never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Workspace, enabled_users, tenant_doc, write_tenant

Edit = Callable[[dict[str, Any]], Any]


def first_user(doc: dict[str, Any]) -> dict[str, Any]:
    return next(iter(doc["configs"]["acme"]["users"].values()))


def rename_tenant(doc: dict[str, Any]) -> None:
    doc["configs"]["../../x"] = doc["configs"].pop("acme")
    for tenant in doc["plan"]["tenants"]:
        tenant["name"] = "../../x"


EDITS: dict[str, tuple[Edit | bytes, str]] = {
    "user-key-removed": (
        lambda d: first_user(d).pop("email"),
        "configs.acme.users.u000@acme.com: not a complete effective user record",
    ),
    "serial-wrong-type": (
        lambda d: d["configs"]["acme"].update(serial="one"),
        "configs.acme.serial: serial: expected a whole number, got 'one'",
    ),
    "tenant-name-is-a-path": (
        rename_tenant,
        "plan.tenants.0.name: name: '../../x' must match ^[a-z0-9-]{1,63}$ (and 1 more)",
    ),
    "extra-key": (
        lambda d: d["configs"]["acme"].update(extra=1),
        "configs.acme.extra: unknown key 'extra'",
    ),
    "plan-summary-removed": (
        lambda d: d["plan"].pop("summary"),
        "plan: missing required key 'summary'",
    ),
    "settings-incomplete": (
        lambda d: d["configs"]["acme"]["tenant"]["settings"].pop("pin_length"),
        "configs.acme.tenant: not a complete effective tenant record",
    ),
    "upn-differs-from-key": (
        lambda d: first_user(d).update(upn="evil@acme.com"),
        "configs.acme.users.u000@acme.com: not a complete effective user record",
    ),
    "header-injection": (
        lambda d: first_user(d).update(display_name="=?utf-8?q?B=0D=0ABcc:_x@evil.example?="),
        "configs.acme.users.u000@acme.com.display_name: display_name must not contain an "
        "encoded word",
    ),
    "recipient-injection": (
        lambda d: first_user(d).update(email="a@acme.com\r\nbcc: x@evil.example"),
        "configs.acme.users.u000@acme.com.email: email must not contain control characters",
    ),
    "shared-conference-id": (
        lambda d: [
            u.update(conference_id="7000000") for u in d["configs"]["acme"]["users"].values()
        ],
        "configs.acme.users.u000@acme.com.conference_id: conference_id '7000000' is defined "
        "more than once",
    ),
    "not-json": (b"{not json", "cannot read saved plan"),
    "deeply-nested": (b"[" * 200_000, "cannot read saved plan"),
    "binary": (bytes(range(256)), "cannot read saved plan"),
    "not-a-plan": (b"[]", "is not a saved plan"),
}


def tree(root: Path) -> dict[str, bytes]:
    return {os.fspath(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_an_edited_saved_plan_is_refused_and_nothing_is_written(
    tmp_path: Path, state_location: str, edit: str
) -> None:
    ws = Workspace(tmp_path / "ws", state_location)
    # Emails held back: an apply would write suppressed copies beside the state.
    write_tenant(ws.config, "acme", tenant_doc(send=False), enabled_users(3, domain="acme.com"))
    planfile = ws.root / "plan.json"
    assert ws.run("plan", "--out", str(planfile)).code == 0
    change, expected = EDITS[edit]
    if isinstance(change, bytes):
        planfile.write_bytes(change)
    else:
        document = json.loads(planfile.read_text(encoding="utf-8"))
        change(document)
        planfile.write_text(json.dumps(document), encoding="utf-8")
    state_before = ws.run("state", "show").stdout
    files_before = tree(tmp_path)

    result = ws.run("apply", str(planfile))

    assert result.code == 1, str(result)
    assert "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and expected in line, line
    assert tree(tmp_path) == files_before
    assert ws.run("state", "show").stdout == state_before
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_an_unedited_saved_plan_still_applies(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, str(tmp_path / "state" / "state.db"))
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    planfile = tmp_path / "plan.json"
    assert ws.run("plan", "--out", str(planfile)).code == 0
    result = ws.run("apply", str(planfile))
    assert result.code == 0, str(result)
    assert len(list((ws.maildir / "new").iterdir())) == 3


@pytest.mark.parametrize("name", ["/abs/path", "../x", "acme/../../x", "", "ACME", "a\x1b[31m"])
@pytest.mark.parametrize("command", ["validate", "plan", "apply", "state"])
def test_a_tenant_option_that_is_not_a_name_is_refused_in_one_line(
    tmp_path: Path, name: str, command: str
) -> None:
    ws = Workspace(tmp_path, str(tmp_path / "state" / "state.db"))
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(1, domain="acme.com"))
    args = ["state", "show"] if command == "state" else [command]
    result = ws.run(*args, "--tenant", name)
    assert result.code == 1, str(result)
    assert result.stderr.splitlines() == [
        f"error: --tenant {name!r} must be 1-63 lowercase letters, digits or '-'; a tenant is "
        "named by its folder"
    ]
    assert "\x1b" not in result.output
    assert not (tmp_path / "state" / "state.db").exists()
