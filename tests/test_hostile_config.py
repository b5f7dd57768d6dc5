"""Shaped YAML and odd files from a pull request: each is a located one-line error through the
real CLI, never a traceback, a hang or a silently missing user, and a failing command leaves the
state and the mail exactly as they were (a tenant that cannot be read completely is never
planned, so its users are never "removed" and sent ``disabled``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.config import loader as config_module
from reconciler.errors import ConfigError
from tests.helpers.cli import Result
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

SECRET = "s3cr3t-value-Zq7vX"
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['x'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


@pytest.fixture
def applied(new_workspace: NewWorkspace) -> Workspace:
    """A tenant applied once (its users got their emails), state and mail on disk."""
    ws = new_workspace()
    write_tenant(
        ws.config,
        "acme",
        tenant_doc(),
        enabled_users(3, domain="acme.com"),
        user_files={"team/more.yaml": enabled_users(2, domain="acme.com", start=3)},
    )
    ws.apply()
    return ws


def users_dir(ws: Workspace) -> Path:
    return ws.config / "acme" / "users"


def outside_secret(ws: Workspace) -> Path:
    secret = ws.root / "outside" / "secret.yaml"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(f"{SECRET}: {SECRET}\nusers: {{}}\n", encoding="utf-8")
    return secret


def deep(ws: Workspace) -> None:
    (ws.config / "acme" / "users.yaml").write_text("users: " + "[" * 600 + "]" * 600 + "\n")


def alias_bomb(ws: Workspace) -> None:
    (users_dir(ws) / "bomb.yaml").write_text(ALIAS_BOMB + "users: {}\n", encoding="utf-8")


def dangling(ws: Workspace) -> None:
    (users_dir(ws) / "gone.yaml").symlink_to(ws.root / "nowhere.yaml")


def loop(ws: Workspace) -> None:
    (users_dir(ws) / "loop.yaml").symlink_to("loop.yaml")


def leaves_tenant(ws: Workspace) -> None:
    (users_dir(ws) / "team" / "more.yaml").unlink()
    (users_dir(ws) / "team" / "more.yaml").symlink_to(outside_secret(ws))


def symlinked_folder(ws: Workspace) -> None:
    outside_secret(ws)
    (users_dir(ws) / "linked").symlink_to(ws.root / "outside")


def fifo(ws: Workspace) -> None:
    os.mkfifo(users_dir(ws) / "pipe.yaml")


def tenant_yaml_leaves(ws: Workspace) -> None:
    (ws.config / "acme" / "tenant.yaml").unlink()
    (ws.config / "acme" / "tenant.yaml").symlink_to(outside_secret(ws))


def tenant_folder_leaves(ws: Workspace) -> None:
    outside = ws.root / "elsewhere"
    shutil.move(ws.config / "acme", outside)
    (ws.config / "acme").symlink_to(outside)


def renamed(file: str, name: str) -> Callable[[Workspace], None]:
    """Damage: the tenant's ``file`` renamed ``name``, as a pull request can."""

    def rename(ws: Workspace) -> None:
        path = ws.config / "acme" / file
        path.rename(path.with_name(name))

    return rename


MISNAMED = (
    "cannot use this file: users files are read only when named *.yaml or *.yml exactly "
    "(lower case, no whitespace around the name); rename it to"
)

DAMAGE: dict[str, tuple[Callable[[Workspace], None], str]] = {
    "deep-nesting": (deep, "acme/users.yaml:1:71: nesting deeper than 64 levels is not allowed"),
    "alias-bomb": (
        alias_bomb,
        "acme/users/bomb.yaml:5:8: aliases repeat more than 10000 values in this file; "
        "write the values out",
    ),
    "dangling-symlink": (
        dangling,
        "acme/users/gone.yaml:1:1: cannot use this file: a broken symbolic link (its target "
        "does not exist)",
    ),
    "symlink-loop": (loop, "acme/users/loop.yaml:1:1: cannot use this file: unreadable: "),
    "symlink-leaves-tenant": (
        leaves_tenant,
        "acme/users/team/more.yaml:1:1: cannot use this file: a symbolic link that leaves the "
        "tenant folder",
    ),
    "symlinked-folder": (
        symlinked_folder,
        "acme/users/linked:1:1: cannot use this folder: a symbolic link (users folders must be "
        "real folders)",
    ),
    "fifo": (fifo, "acme/users/pipe.yaml:1:1: cannot use this file: not a regular file"),
    "tenant-yaml-leaves": (
        tenant_yaml_leaves,
        "acme/tenant.yaml:1:1: cannot use this file: a symbolic link that leaves the tenant folder",
    ),
    "upper-case-yaml": (
        renamed("users/team/more.yaml", "more.YAML"),
        f"acme/users/team/more.YAML:1:1: {MISNAMED} 'more.yaml'",
    ),
    "mixed-case-yml": (
        renamed("users/team/more.yaml", "more.Yml"),
        f"acme/users/team/more.Yml:1:1: {MISNAMED} 'more.yml'",
    ),
    "trailing-space": (
        renamed("users/team/more.yaml", "more.yaml "),
        f"acme/users/team/more.yaml :1:1: {MISNAMED} 'more.yaml'",
    ),
    "trailing-newline": (
        renamed("users/team/more.yaml", "more.yaml\n"),
        f"acme/users/team/more.yaml\\x0a:1:1: {MISNAMED} 'more.yaml'",
    ),
    "users-yaml-case": (
        renamed("users.yaml", "Users.yaml"),
        "acme/Users.yaml:1:1: cannot use this file: users are read from a file named "
        "'users.yaml' exactly; rename it to 'users.yaml'",
    ),
    "users-folder-space": (
        renamed("users", "users "),
        "acme/users :1:1: cannot use this folder: users are read from a folder named 'users' "
        "exactly; rename it to 'users'",
    ),
    "tenant-folder-leaves": (
        tenant_folder_leaves,
        "acme:1:1: cannot use this folder: a symbolic link that leaves the configuration folder",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_config_is_one_located_error_and_changes_nothing(
    applied: Workspace, damage: str
) -> None:
    make, expected = DAMAGE[damage]
    make(applied)
    before = applied.snapshot()
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        result = applied.run(*command, timeout=20)
        assert result.code == 1, str(result)
        assert "Traceback" not in result.output and SECRET not in result.output
        problems = result.stderr.splitlines()[:-1]
        assert len(problems) == 1 and problems[0].startswith(expected), str(result)
        assert applied.snapshot() == before


def test_an_unreadable_users_file_is_a_located_error(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(2, domain="acme.com"))
    private = ws.config / "acme" / "users" / "private.yaml"
    private.parent.mkdir()
    private.write_text("users: {}\n", encoding="utf-8")
    private.chmod(0)
    result = run_without_file_override(ws, "validate", "--config", str(ws.config))
    assert result.code == 1, str(result)
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        "acme/users/private.yaml:1:1: cannot use this file: unreadable: permission denied"
    )


def run_without_file_override(ws: Workspace, *args: str) -> Result:
    """The CLI with file modes in force: as root, a process without the capabilities that
    bypass them."""
    wrapper: list[str] = []
    if os.geteuid() == 0:
        caps = "-dac_override,-dac_read_search"
        wrapper = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]
    return ws.python_m(*args, wrapper=wrapper)


def test_a_file_larger_than_the_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tenant(tmp_path, "acme", tenant_doc(), enabled_users(40, domain="acme.com"))
    monkeypatch.setattr(config_module, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert [str(p) for p in raised.value.problems] == [
        "acme/users.yaml:1:1: cannot use this file: larger than 0 MiB"
    ]


def test_a_symlink_inside_the_tenant_folder_is_read(tmp_path: Path) -> None:
    write_tenant(tmp_path, "acme", tenant_doc(), user_files={"a.yaml": enabled_users(1)})
    (tmp_path / "acme" / "users" / "b.yml").symlink_to("a.yaml")
    (tmp_path / "acme" / "users" / "notes.txt").write_text("not a users file\n")
    with pytest.raises(ConfigError) as raised:  # the same user twice: read through the link
        load_config(tmp_path)
    assert (
        "acme/users/b.yml:2:3: user 'u000@contoso.com' is defined more than once: also in "
        "acme/users/a.yaml (u000@contoso.com)" in map(str, raised.value.problems)
    )


def test_small_aliases_still_work(tmp_path: Path) -> None:
    write_tenant(
        tmp_path,
        "acme",
        tenant_doc(),
        "users:\n  a@acme.com: &u {license: false}\n  b@acme.com: *u\n",
    )
    users = load_config(tmp_path).tenants["acme"].users
    assert sorted(users) == ["a@acme.com", "b@acme.com"]


@pytest.mark.parametrize(
    ("where", "yaml_text"),
    [
        (
            "users",
            "users:\n  a@acme.com:\n    license: true\n    conference_id: '7000099'\n"
            "    display_name: '=?utf-8?q?Bob=0D=0AReply-To:_attacker@evil.example?='\n",
        ),
        ("tenant", None),
    ],
)
def test_an_encoded_word_header_injection_is_refused_by_every_command(
    applied: Workspace, where: str, yaml_text: str | None
) -> None:
    if where == "users":
        (applied.config / "acme" / "users.yaml").write_text(yaml_text, encoding="utf-8")
        expected = "acme/users.yaml:5:19: display_name must not contain an encoded word"
    else:
        doc = tenant_doc(override=("=?utf-8?q?X=0D=0ABcc:_spy@evil.example?=", "c@acme.com"))
        write_tenant(
            applied.config,
            "acme",
            doc,
            enabled_users(3, domain="acme.com"),
            user_files={"team/more.yaml": enabled_users(2, domain="acme.com", start=3)},
        )
        expected = "acme/tenant.yaml:"
    before = applied.snapshot()
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        result = applied.run(*command)
        assert result.code == 1 and "Traceback" not in result.output, str(result)
        assert result.stderr.startswith(expected) and "encoded word" in result.stderr
        assert applied.snapshot() == before
