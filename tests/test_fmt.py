"""``reconciler fmt``: one canonical layout that keeps comments and never changes meaning."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.config import load_config
from reconciler.config.fmt_layout import format_yaml
from reconciler.config.fmt_quoting import plain_is_safe, quoted
from reconciler.config.fmt_source import FormatError
from reconciler.config.yamlload import load
from tests.helpers.workspace import NewWorkspace

EXAMPLE_ROOT = Path(__file__).resolve().parent.parent / "tenants"

MESSY = """\
# yaml-language-server: $schema=../../../schemas/users.schema.json

# Engineering, as three people wrote it
users:
    # zed first, by accident
    zed@contoso.com: {license: true, conference_id: 0123456}   # one line, kept so
    bob@contoso.com:
        locale: fr
        license: true
        display_name: 'Bob, the "builder"'
        conference_id:
          "8412345"
        dial_in_number: +14255550100      # aligned comment
    # about alice


    alice@contoso.com:
      license: true
      display_name: >-
        Alice
        Martin
      email: null
      provider: "None"
# the end
"""

CANONICAL = """\
# yaml-language-server: $schema=../../../schemas/users.schema.json

# Engineering, as three people wrote it
users:
  # about alice
  alice@contoso.com:
    display_name: Alice Martin
    license: true
    provider: None
    email: null

  bob@contoso.com:
    display_name: Bob, the "builder"
    license: true
    conference_id: "8412345"
    dial_in_number: "+14255550100"        # aligned comment
    locale: fr

  # zed first, by accident
  zed@contoso.com: {license: true, conference_id: "0123456"}   # one line, kept so
# the end
"""


def fmt(text: str, kind: str = "users") -> str:
    return format_yaml(text, "users.yaml", kind)  # type: ignore[arg-type]


def test_messy_users_file_gets_the_canonical_layout_with_every_comment_in_place() -> None:
    assert fmt(MESSY) == CANONICAL


def test_formatting_is_idempotent() -> None:
    assert fmt(CANONICAL) == CANONICAL


def test_the_shipped_example_is_already_canonical() -> None:
    for path in sorted(EXAMPLE_ROOT.rglob("*.yaml")):
        kind = "tenant" if path.name == "tenant.yaml" else "users"
        text = path.read_text(encoding="utf-8")
        assert fmt(text, kind) == text, path


def test_keys_follow_the_documented_order_and_integers_stay_plain() -> None:
    tenant = (
        "email: {locale: en}\n"
        "bridge:\n  default_number: '+14255550100'\n  numbers:\n"
        "  - location: Redmond\n    type: toll\n    number: '+14255550100'\n"
        "settings:\n  pin_length: '6'\n  automatically_send_emails_to_users: false\n"
    )
    assert fmt(tenant, "tenant") == (
        "settings:\n  automatically_send_emails_to_users: false\n  pin_length: 6\n\n"
        'bridge:\n  numbers:\n    - number: "+14255550100"\n      type: toll\n'
        '      location: Redmond\n  default_number: "+14255550100"\n\n'
        "email: {locale: en}\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "0123456",
        "+14255550100",
        "yes",
        "No",
        "on",
        "y",
        "true",
        "False",
        "null",
        "~",
        "",
        "1:30",
        "2024-01-01",
        "0o17",
        "0x1F",
        ".inf",
        "1e3",
        "<<",
        "=",
        " lead",
        "trail ",
        "a: b",
        "a #b",
        "-x",
        "#x",
        "@x",
        "`x",
        "!x",
        "&x",
        "*x",
        "|x",
        ">x",
        "%x",
        "'x",
        '"x',
        "...",
        "---",
        "line\nbreak",
        "tab\there",
        "nel\x85",
        "ls\u2028",
    ],
)
def test_a_string_any_yaml_reader_could_misread_is_double_quoted(text: str) -> None:
    assert not plain_is_safe(text)
    out = fmt(f"users:\n  a@b.c:\n    license: true\n    display_name: {quoted(text)}\n")
    assert f"\n    display_name: {quoted(text)}\n" in out
    assert yaml.safe_load(out)["users"]["a@b.c"]["display_name"] == text  # YAML 1.1 too


@pytest.mark.parametrize(
    "text",
    [
        "Alice Martin",
        "O'Brien",
        'say "hi"',
        "a#b",
        "Chloé Dubois",
        "None",
        "Redmond, WA",
        "https://aka.ms/x",
        "a@b.c",
        "8412345x",
    ],
)
def test_a_string_every_reader_reads_the_same_is_plain(text: str) -> None:
    assert plain_is_safe(text)
    out = fmt(f"users:\n  a@b.c:\n    license: true\n    display_name: {quoted(text)}\n")
    assert f"\n    display_name: {text}\n" in out


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be"])
def test_crlf_bom_utf16_and_indentation_become_utf8_lf_two_spaces(encoding: str) -> None:
    text = "\ufeffusers:\r\n    a@b.c:\r\n        license: true\r\n"
    out = format_yaml(text.encode(encoding), "users.yaml", "users")
    assert out == "users:\n  a@b.c:\n    license: true\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("users:\n  a@b.c: [\n", "invalid YAML"),
        ("users:\n  a@b.c: {license: true}\n  a@b.c: {license: false}\n", "duplicate key"),
        ("users:\n  a@b.c: &x {license: true}\n  b@b.c: *x\n", "anchors and aliases"),
        ("- users\n", "expected a mapping"),
        (f"users:\n  ? {'x' * 1100}\n  : {{}}\n", "longer than 1024"),
        ("\ufeffusers: [\udc00]".encode("utf-16-le", "surrogatepass"), "invalid YAML"),
    ],
)
def test_files_fmt_cannot_rewrite_safely_are_located_errors(
    text: str | bytes, message: str
) -> None:
    with pytest.raises(FormatError) as caught:
        format_yaml(text, "users.yaml", "users")
    (problem,) = caught.value.problems
    assert problem.file == "users.yaml" and problem.line >= 1 and message in problem.message


# ----------------------------------------------------------------- randomized: meaning kept

TRICKY = [
    "0?",
    "a?b",
    "yes",
    "no",
    "on",
    "0123456",
    "+14255550100",
    "true",
    "null",
    "~",
    "",
    "a: b",
    "a #b",
    "#x",
    "-x",
    "1:30",
    "2024-01-01",
    "Chloé",
    "O'Brien",
    "x,y",
    "{x}",
    "[x]",
    "...",
    "  pad  ",
    "None",
    "é\u200d",
    "ünïcødé",
    "@team",
    "tab\there",
]
texts = st.one_of(
    st.sampled_from(TRICKY), st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
)
values = st.one_of(st.booleans(), st.none(), texts)
users_data = st.dictionaries(
    st.from_regex(r"[a-z]{1,6}@[a-z]{1,5}\.com", fullmatch=True),
    st.dictionaries(
        st.sampled_from(
            [
                "display_name",
                "license",
                "provider",
                "conference_id",
                "dial_in_number",
                "email",
                "locale",
                "nickname",
            ]
        ),
        values,
        max_size=6,
    ),
    max_size=6,
)


def _scalar(draw: Any, value: Any, flow: bool) -> str:
    if value is None:
        return draw(st.sampled_from(["null", "~", ""]))
    if isinstance(value, bool):
        return "true" if value else "false"
    styles = ["double"]
    if value.isprintable() and "\x85" not in value:
        styles.append("single")
    if plain_is_safe(value, flow):
        styles.append("plain")
    style = draw(st.sampled_from(styles))
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    return value if style == "plain" else quoted(value)


@st.composite
def written(draw: Any) -> str:
    """Users data written the way people write it: any indentation, order, quoting, one-line
    flow mappings, comments above entries and at ends of lines, blank lines."""
    data = draw(users_data)
    indent = " " * draw(st.sampled_from([2, 3, 4]))
    comment = st.from_regex(r"# [a-z]{1,5}( [a-z]{1,5})?", fullmatch=True)
    lines = [draw(comment)] if draw(st.booleans()) else []
    lines.append("users:")
    for upn in draw(st.permutations(list(data))):
        if draw(st.booleans()):
            lines.append("")
        if draw(st.booleans()):
            lines.append(indent + draw(comment))
        fields = draw(st.permutations(list(data[upn].items())))
        if draw(st.booleans()) and fields:
            inner = ", ".join(f"{k}: {_scalar(draw, v, True) or 'null'}" for k, v in fields)
            lines.append(f"{indent}{upn}: {{{inner}}}")
        elif not fields:
            lines.append(f"{indent}{upn}: {{}}")
        else:
            lines.append(f"{indent}{upn}:")
            for key, value in fields:
                line = f"{indent * 2}{key}: {_scalar(draw, value, False)}".rstrip()
                if draw(st.booleans()):
                    line += "  " + draw(comment)
                lines.append(line)
    if draw(st.booleans()):
        lines.append(draw(comment))
    return "\n".join(lines) + "\n"


@settings(
    max_examples=int(os.environ.get("RECONCILER_FMT_EXAMPLES", "150")),
    deadline=None,
    derandomize=os.environ.get("RECONCILER_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow],
)
@given(written())
def test_formatting_any_users_file_keeps_meaning_comments_and_is_a_fixed_point(text: str) -> None:
    before = load(text, "f", [])
    out = fmt(text)
    assert load(out, "f", []) == before  # our loader: identical data
    assert fmt(out) == out  # idempotent
    assert sorted(_comment_texts(out)) == sorted(_comment_texts(text))
    assert list(out and (load(out, "f", [])["users"] or {})) == sorted(
        before["users"] or {}, key=lambda u: (u.casefold(), u)
    )
    assert yaml.safe_load(out) == before  # and a YAML 1.1 reader reads the same values


def _comment_texts(text: str) -> list[str]:
    found = []
    for token_line in text.splitlines():
        stripped = token_line.strip()
        if stripped.startswith("#"):
            found.append(stripped)
        elif "  # " in token_line and not token_line.lstrip().startswith(("'", '"')):
            found.append("#" + token_line.rsplit("  #", 1)[1])
    return found


# ------------------------------------------------------------------------------- the command


def messy_example(root: Path) -> Path:
    """The example tenant re-typed by someone else: other indentation, order and quoting."""
    shutil.copytree(EXAMPLE_ROOT, root / "tenants", dirs_exist_ok=True)
    sales = root / "tenants" / "contoso" / "users" / "sales.yaml"
    text = sales.read_text(encoding="utf-8").replace("  ", "    ")
    text = text.replace('conference_id: "5550101"', "conference_id: '5550101'")
    sales.write_text(text.replace("dan@contoso.com", "zz-dan@contoso.com"), encoding="utf-8")
    tenant = root / "tenants" / "contoso" / "tenant.yaml"
    head, _, rest = tenant.read_text(encoding="utf-8").partition("settings:")
    settings_part, _, bridge = rest.partition("\nbridge:")
    tenant.write_text(
        head + "bridge:" + bridge + "\nsettings:" + settings_part + "\n", encoding="utf-8"
    )
    return root / "tenants"


def test_fmt_rewrites_only_what_is_not_canonical_and_the_tenant_means_the_same(
    new_workspace: NewWorkspace,
) -> None:
    ws = new_workspace()
    config = messy_example(ws.root)
    before = load_config(config).tenants["contoso"]
    untouched = (config / "contoso" / "users" / "paris.yaml").stat().st_mtime_ns
    os.chmod(config / "contoso" / "tenant.yaml", 0o640)

    check = ws.cli("fmt", "--check")
    assert check.code == 1
    assert check.stdout.splitlines() == [
        "would reformat tenants/contoso/tenant.yaml",
        "would reformat tenants/contoso/users/sales.yaml",
    ]
    assert load_config(config).tenants["contoso"].files == before.files  # nothing written

    result = ws.cli("fmt")
    assert result.code == 0, str(result)
    assert "2 file(s) reformatted, 2 already formatted." in result.stderr
    after = load_config(config).tenants["contoso"]
    assert (after.tenant, after.users) == (before.tenant, before.users)
    assert (config / "contoso" / "users" / "paris.yaml").stat().st_mtime_ns == untouched
    assert stat.S_IMODE((config / "contoso" / "tenant.yaml").stat().st_mode) == 0o640
    assert (config / "contoso" / "tenant.yaml").read_bytes() == (
        EXAMPLE_ROOT / "contoso" / "tenant.yaml"
    ).read_bytes()
    assert ws.cli("fmt", "--check").code == 0


def test_fmt_with_any_problem_lists_them_all_and_writes_nothing(
    new_workspace: NewWorkspace,
) -> None:
    ws = new_workspace()
    config = messy_example(ws.root)
    broken = config / "contoso" / "users" / "paris.yaml"
    broken.write_text("users:\n  a@b.c: &a {license: true}\n  b@b.c: *a\n", encoding="utf-8")
    (config / "contoso" / "users" / "link.yaml").symlink_to(broken)
    (ws.root / "README.md").write_text("# notes\n", encoding="utf-8")
    snapshot = {p: p.read_bytes() for p in config.rglob("*.yaml") if not p.is_symlink()}
    result = ws.cli("fmt", "tenants/contoso", "README.md", "gone.yaml")
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "README.md:1:1: not a tenant or users file (tenant.yaml, users.yaml or users/**/*.yaml)",
        "gone.yaml:1:1: no such file or folder",
        "tenants/contoso/users/link.yaml:1:1: cannot format this file: a symbolic link; fmt "
        "formats regular files only (name its target)",
        "tenants/contoso/users/paris.yaml:2:10: fmt does not rewrite files that use anchors and "
        "aliases; write the values out, or leave this file out of fmt",
        "4 problem(s) found; nothing was written.",
    ]
    assert {p: p.read_bytes() for p in snapshot} == snapshot


def files_under(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "paths",
    [[], ["--check"], ["tenants/evil"], ["tenants/evil/users/sales.yaml"], ["tenants"]],
    ids=["all", "check", "tenant-folder", "file-through-it", "config-folder"],
)
def test_a_tenant_folder_linked_out_of_the_configuration_is_refused_as_validate_does(
    new_workspace: NewWorkspace, paths: list[str]
) -> None:
    ws = new_workspace()
    messy_example(ws.root / "elsewhere")  # not canonical: fmt would rewrite it
    outside = ws.root / "elsewhere" / "tenants" / "contoso"
    shutil.copytree(EXAMPLE_ROOT, ws.root / "tenants", dirs_exist_ok=True)
    (ws.config / "evil").symlink_to(outside)
    before = files_under(ws.root)
    expected = (
        "tenants/evil:1:1: cannot use this folder: a symbolic link that leaves the "
        "configuration folder"
    )
    assert ws.cli("validate").stderr.splitlines()[0] == expected.removeprefix("tenants/")
    result = ws.cli("fmt", *paths)
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert result.stderr.splitlines() == [expected, "1 problem(s) found; nothing was written."]
    assert result.stdout == ""
    assert files_under(ws.root) == before


@pytest.mark.parametrize("command", [["fmt"], ["validate"], ["plan"]])
def test_outside_a_configuration_repository_it_says_where_it_looked_and_how_to_point_it(
    new_workspace: NewWorkspace, command: list[str]
) -> None:
    ws = new_workspace()
    ws.config.rmdir()  # a folder with no tenants/ in it
    result = ws.cli(*command)
    assert result.code == 1 and "Traceback" not in result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"tenants:1:1: no folder {ws.root / 'tenants'} (")
    assert "pass --config DIR (env RECONCILER_CONFIG)" in first
