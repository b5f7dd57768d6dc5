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

from reconciler.planfile import MAX_BYTES as MAX_SAVED_PLAN_BYTES
from reconciler.state.sqlite import SQLiteStore
from tests.helpers.cli import assert_clean_error
from tests.helpers.tenants import enabled_users, make_tenant, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace

Edit = Callable[[Path], None]


def edit_json(change: Callable[[dict[str, Any]], Any]) -> Edit:
    def edit(path: Path) -> None:
        document = json.loads(path.read_text(encoding="utf-8"))
        change(document)
        path.write_text(json.dumps(document), encoding="utf-8")

    return edit


def content(data: bytes) -> Edit:
    def edit(path: Path) -> None:
        path.write_bytes(data)

    return edit


def huge(path: Path) -> None:
    """One byte over the limit, and sparse: refused by its size, never read."""
    os.truncate(path, MAX_SAVED_PLAN_BYTES + 1)


def first_user(doc: dict[str, Any]) -> dict[str, Any]:
    return next(iter(doc["configs"]["acme"]["users"].values()))


def rename_tenant(doc: dict[str, Any]) -> None:
    doc["configs"]["../../x"] = doc["configs"].pop("acme")
    for tenant in doc["plan"]["tenants"]:
        tenant["name"] = "../../x"


INVALID = "not a valid saved plan, was it edited? "
EDITS: dict[str, tuple[Edit, str]] = {
    "user-key-removed": (
        edit_json(lambda d: first_user(d).pop("email")),
        INVALID + "configs.acme.users.u000@acme.com: not a complete effective user record",
    ),
    "serial-wrong-type": (
        edit_json(lambda d: d["configs"]["acme"].update(serial="one")),
        INVALID + "configs.acme.serial: serial: expected a whole number, got 'one'",
    ),
    "tenant-name-is-a-path": (
        edit_json(rename_tenant),
        INVALID + "plan.tenants.0.name: name: '../../x' must be 1-63 lowercase letters, digits "
        "or '-' (and 1 more)",
    ),
    "tenant-name-is-a-path-in-configs-only": (
        edit_json(lambda d: d["configs"].update({"../../x": d["configs"].pop("acme")})),
        INVALID + "configs.../../x: '../../x' must be 1-63 lowercase letters, digits or '-';",
    ),
    "configs-removed": (
        edit_json(lambda d: d.pop("configs")),
        INVALID + "missing required key 'configs' in the file;",
    ),
    "serial-negative": (
        edit_json(lambda d: d["configs"]["acme"].update(serial=-1)),
        INVALID + "configs.acme.serial: serial: -1 is out of range; allowed: 0 or more;",
    ),
    "extra-key": (
        edit_json(lambda d: d["configs"]["acme"].update(extra=1)),
        INVALID + "configs.acme.extra: unknown key 'extra'",
    ),
    "extra-key-at-the-top": (
        edit_json(lambda d: d.update(run="rm -rf /")),
        INVALID + "run: unknown key 'run'",
    ),
    "plan-summary-removed": (
        edit_json(lambda d: d["plan"].pop("summary")),
        INVALID + "plan: missing required key 'summary'",
    ),
    "email-type-unknown": (
        edit_json(lambda d: d["plan"]["tenants"][0]["emails"][0].update(type="exec")),
        INVALID + "plan.tenants.0.emails.0.type: type: 'exec' is not allowed",
    ),
    "lineage-not-a-lineage": (
        edit_json(lambda d: d["configs"]["acme"].update(lineage="../x")),
        INVALID + "configs.acme.lineage: lineage: '../x' must match ^[0-9a-f]{32}$",
    ),
    "settings-incomplete": (
        edit_json(lambda d: d["configs"]["acme"]["tenant"]["settings"].pop("pin_length")),
        INVALID + "configs.acme.tenant: not a complete effective tenant record",
    ),
    "upn-differs-from-key": (
        edit_json(lambda d: first_user(d).update(upn="evil@acme.com")),
        INVALID + "configs.acme.users.u000@acme.com: not a complete effective user record",
    ),
    "file-outside-the-tenant": (
        edit_json(lambda d: d["configs"]["acme"]["files"].update({"acme/../../x.yaml": "0"})),
        INVALID + "configs.acme.files: names a file outside the tenant folder acme/",
    ),
    "header-injection": (
        edit_json(
            lambda d: first_user(d).update(display_name="=?utf-8?q?B=0D=0ABcc:_x@evil.example?=")
        ),
        INVALID + "configs.acme.users.u000@acme.com.display_name: display_name must not "
        "contain an encoded word",
    ),
    "recipient-injection": (
        edit_json(lambda d: first_user(d).update(email="a@acme.com\r\nbcc: x@evil.example")),
        INVALID + "configs.acme.users.u000@acme.com.email: email must not contain control "
        "characters",
    ),
    "shared-conference-id": (
        edit_json(
            lambda d: [
                u.update(conference_id="7000000") for u in d["configs"]["acme"]["users"].values()
            ]
        ),
        INVALID + "configs.acme.users.u000@acme.com.conference_id: conference_id '7000000' is "
        "defined more than once",
    ),
    "not-json": (content(b"{not json"), "cannot read this saved plan: Expecting"),
    "deeply-nested": (content(b"[" * 200_000), "cannot read this saved plan: nested too deeply"),
    "binary": (content(bytes(range(256))), "cannot read this saved plan"),
    "empty": (content(b""), "cannot read this saved plan"),
    "huge": (huge, "cannot read this saved plan: larger than 1024 MiB"),
    "not-a-plan": (content(b"[]"), "not a saved plan"),
    "other-format": (
        edit_json(lambda d: d.update(format_version="2")),
        "plan format '2'; this reconciler reads format '1'",
    ),
}


def tree(root: Path) -> dict[str, bytes]:
    return {os.fspath(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_an_edited_saved_plan_is_refused_and_nothing_is_written(
    tmp_path: Path, new_workspace: NewWorkspace, state_location: str, edit: str
) -> None:
    ws = new_workspace(state_location, root=tmp_path / "ws")
    # Emails held back: an apply would write suppressed copies beside the state.
    write_tenant(ws.config, "acme", tenant_doc(send=False), enabled_users(3, domain="acme.com"))
    planfile = ws.root / "plan.json"
    assert ws.run("plan", "--out", str(planfile)).code == 0
    change, expected = EDITS[edit]
    change(planfile)
    state_before = ws.run("state", "show").stdout
    files_before = tree(tmp_path)

    result = ws.run("apply", str(planfile))

    assert result.code == 1, str(result)
    assert "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {planfile}: {expected}"), line
    assert tree(tmp_path) == files_before
    assert ws.run("state", "show").stdout == state_before
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_an_unedited_saved_plan_still_applies(tmp_path: Path, new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(3, domain="acme.com"))
    planfile = tmp_path / "plan.json"
    assert ws.run("plan", "--out", str(planfile)).code == 0
    result = ws.run("apply", str(planfile))
    assert result.code == 0, str(result)
    assert len(list((ws.maildir / "new").iterdir())) == 3


@pytest.mark.parametrize("name", ["/abs/path", "../x", "acme/../../x", "", "ACME", "a\x1b[31m"])
@pytest.mark.parametrize(
    "command",
    [
        ["validate"],
        ["plan"],
        ["apply", "--auto-approve"],
        ["import"],
        ["state", "show"],
        ["history"],
        ["preview", "--out", "preview"],
        ["test-email", "--to", "a@acme.com"],
    ],
    ids=lambda command: command[0],
)
def test_a_tenant_option_that_is_not_a_name_is_refused_in_one_line(
    tmp_path: Path, new_workspace: NewWorkspace, name: str, command: list[str]
) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(1, domain="acme.com"))
    result = ws.run(*command, "--tenant", name)
    assert result.code == 1, str(result)
    assert result.stderr.splitlines() == [
        f"error: --tenant {name!r} must be 1-63 lowercase letters, digits or '-'; a tenant is "
        "named by its folder"
    ]
    assert "\x1b" not in result.output
    assert not (tmp_path / "state" / "state.db").exists() and not ws.maildir.exists()
    assert not (ws.root / "preview").exists()


@pytest.mark.parametrize(
    "document",
    [
        '{"kind": "audio-conferencing-reconciler saved plan", "format_version": "1", "plan": {}}',
        '{"kind": "audio-conferencing-reconciler saved plan", "format_version": "1",'
        ' "configs": {"acme": {"tenant": {}}}, "plan": {"tenants": []}}',
        '{"kind": "audio-conferencing-reconciler saved plan", "format_version": "1",'
        ' "configs": [], "plan": {"tenants": []}}',
    ],
)
def test_incomplete_saved_plan_is_one_line(new_workspace: NewWorkspace, document: str) -> None:
    ws = new_workspace()
    make_tenant(ws.config)
    (ws.root / "x.plan").write_text(document)
    result = ws.run("apply", str(ws.root / "x.plan"))
    assert_clean_error(result, "saved plan")
    state = Path(ws.state)
    assert not state.exists() or SQLiteStore(state).load("acme") is None
