"""Templates from a pull request are data: nothing in them runs code, reads a file outside the
templates folder or brings a rendered value (a secret, a PIN) into an error, output or artifact.

Every attack goes through the real CLI (``validate``, ``plan``-side ``preview --out`` and
``apply``): exit 1, a located one-line message, no traceback, the marker file never created, the
secret nowhere, and state and mail untouched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.emails.sandbox import FILTERS
from reconciler.emails.templates import check_templates
from reconciler.resources import default_templates
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant
from tests.helpers.workspace import NewWorkspace, Workspace

SECRET = "s3cr3t-token-Zq7vX"

# Each attack replaces the body of templates/en/enabled.txt; {marker} is a file path that must
# never appear. ``where`` is the line the located error must point at.
ATTACKS = {
    "globals-os-system": "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "environment-secret-in-error": "{{ {}[cycler.__init__.__globals__.os.environ.SECRET] }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}",
    "class-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "self-module": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "attr-filter": "{{ display_name|attr('__class__') }}",
    "format-string": "{{ '{0.__class__.__mro__}'.format(display_name) }}",
    "namespace-global": "{% set ns = namespace(x=1) %}{{ ns.x }}",
    "range-global": "{% for i in range(3) %}{{ i }}{% endfor %}",
    "pprint-repr": "{{ dial_in|pprint }}",
    "string-repeat-bomb": "{{ 'x' * 999999999 }}",
    "power-bomb": "{{ 9 ** 9 ** 9 }}",
    "pin-in-error": "{{ {}[pin] }}",
    "list-mutation": "{% set l = [] %}{{ l.append(1) }}",
}


@pytest.fixture
def acme(new_workspace: NewWorkspace) -> Workspace:
    """acme (2 users) not applied yet, and a secret in the commands' environment."""
    ws = new_workspace()
    write_tenant(ws.config, "acme", tenant_doc(), enabled_users(2, domain="acme.com"))
    ws.env["SECRET"] = SECRET
    return ws


def hostile_templates(ws: Workspace, body: str) -> Path:
    templates = ws.root / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text(f"Hello\n{body}\n", encoding="utf-8")
    return templates


def files_under(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {os.fspath(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_hostile_template_is_refused_by_every_command_and_runs_nothing(
    acme: Workspace, attack: str
) -> None:
    marker = acme.root / "MARKER"
    templates = hostile_templates(acme, ATTACKS[attack].replace("{marker}", str(marker)))
    preview = acme.root / "preview"
    state = acme.root / "state"
    for command in (
        ["validate"],
        ["preview", "--out", str(preview)],
        ["apply", "--auto-approve"],
    ):
        result = acme.run(*command, "--templates", str(templates))
        assert result.code == 1, str(result)
        assert "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("templates/")]
        assert errors, str(result)
        assert all(line.startswith("templates/en/enabled.txt:2:1: ") for line in errors), errors
        assert SECRET not in result.output
        assert not marker.exists()
        assert files_under(state) == {} and files_under(acme.maildir) == {}
        assert not any(SECRET.encode() in data for data in files_under(preview).values())


def test_a_subject_with_an_encoded_word_is_refused_before_apply_sends_anything(
    acme: Workspace,
) -> None:
    """Mail programs would decode ``=?...?=`` into a line break and a header of its own:
    ``validate`` refuses the template at its place, and ``apply`` before anything is written."""
    templates = hostile_templates(acme, "")
    (templates / "en" / "enabled.subject.txt").write_text(
        "=?utf-8?q?Hello=0D=0ABcc:_x@example.com?=\n", encoding="utf-8"
    )
    state = acme.root / "state"
    for command in (["validate"], ["apply", "--auto-approve"]):
        result = acme.run(*command, "--templates", str(templates))
        assert result.code == 1, str(result)
        errors = [line for line in result.stderr.splitlines() if line.startswith("templates/")]
        assert errors == [
            "templates/en/enabled.subject.txt:1:1: an email subject must not contain an encoded "
            "word ('=?...?='), which mail programs would decode; write it as plain text"
        ], str(result)
        assert files_under(state) == {} and files_under(acme.maildir) == {}


def test_a_template_symlink_cannot_read_files_outside_the_templates_folder(
    acme: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = acme.root / "secret.txt"
    outside.write_text(f"{SECRET}\n", encoding="utf-8")
    templates = hostile_templates(acme, '{% include "leak.txt" %}')
    (templates / "en" / "leak.txt").symlink_to(outside)
    (templates / "en" / "disabled.txt").unlink()
    (templates / "en" / "disabled.txt").symlink_to("/proc/self/environ")
    preview = acme.root / "preview"
    for command in (["validate"], ["preview", "--out", str(preview)], ["apply", "--auto-approve"]):
        result = acme.run(*command, "--templates", str(templates))
        assert result.code == 1, str(result)
        assert "Traceback" not in result.output and SECRET not in result.output
        assert "resolves outside its templates folder" in result.stderr
        assert files_under(acme.maildir) == {}
        assert not any(SECRET.encode() in data for data in files_under(preview).values())
    outside_message = (
        "template file resolves outside its templates folder (a symlink?); templates must be "
        "files inside the folder"
    )
    monkeypatch.chdir(acme.root)
    assert [str(p) for p in check_templates(Path("templates"))] == [
        f"templates/en/disabled.txt:1:1: {outside_message}",
        f"templates/en/leak.txt:1:1: {outside_message}",
    ]


def test_a_symlink_inside_the_templates_folder_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    shared = templates / "en" / "enabled.txt"
    (templates / "en" / "pin-reset.txt").unlink()
    (templates / "en" / "pin-reset.txt").symlink_to(shared)
    monkeypatch.chdir(tmp_path)
    assert check_templates(Path("templates")) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"Hello \xff\xfe\n", "template file is not UTF-8 text"),
        (b"x" * (300 * 1024), "template file is larger than 256 KiB"),
    ],
    ids=["not-utf8", "too-large"],
)
def test_unusable_template_files_are_located_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, message: str
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_templates(Path("templates"))] == [
        f"templates/en/enabled.txt:1:1: {message}"
    ]


def test_a_render_error_never_quotes_the_value_but_names_a_written_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    (templates / "en" / "enabled.txt").write_text(
        "{{ manager }}\n{{ dial_in.country }}\n{{ {}[display_name] }}\n", encoding="utf-8"
    )
    (templates / "en" / "pin-reset.txt").write_text("{{ {}[upn] }}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    problems = [str(p) for p in check_templates(Path("templates"))]
    documented = "templates may use only the documented variables (README, Email templates)"
    assert problems == [
        f"templates/en/enabled.txt:1:1: undefined name 'manager'; {documented}",
        f"templates/en/pin-reset.txt:1:1: undefined variable, attribute or key; {documented}",
    ]
    assert not any("alice" in p or "Alice" in p for p in problems)


def test_only_documented_filters_exist_and_the_shipped_templates_need_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates(), templates)
    body = "".join(f"{{{{ upn|{name} }}}}\n" for name in ("upper", "title", "trim", "e"))
    (templates / "en" / "enabled.txt").write_text(body + "{{ upn|tojson }}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in check_templates(Path("templates"))] == [
        "templates/en/enabled.txt:5:1: No filter named 'tojson'."
    ]
    assert {"tojson", "attr", "pprint", "safe", "format", "map"}.isdisjoint(FILTERS)
