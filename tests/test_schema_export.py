"""``reconciler schema --out DIR``: the JSON Schemas for editors and CI, from the packaged copy."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.helpers.workspace import NewWorkspace, Workspace

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["tenant.schema.json", "users.schema.json", "plan.schema.json", "drift.schema.json"]


@pytest.fixture
def exported(new_workspace: NewWorkspace) -> tuple[Path, str]:
    ws = new_workspace()  # any folder: the schemas come with the package
    result = ws.cli("schema", "--out", "editor/schemas")
    assert result.code == 0, str(result)
    return ws.root / "editor" / "schemas", result.output


def test_exports_every_schema_byte_for_byte(exported: tuple[Path, str]) -> None:
    out, output = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert (out / name).read_bytes() == (ROOT / "schemas" / name).read_bytes()
        schema = json.loads((out / name).read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert f"wrote editor/schemas/{name}" in output


def test_prints_a_vscode_mapping_that_matches_the_config_files(exported: tuple[Path, str]) -> None:
    _, output = exported
    settings = json.loads(output[output.index("{") :])
    mapping = settings["yaml.schemas"]
    assert mapping["./editor/schemas/tenant.schema.json"] == ["tenants/*/tenant.yaml"]
    users_globs = mapping["./editor/schemas/users.schema.json"]
    matched = sorted({p.relative_to(ROOT).as_posix() for g in users_globs for p in ROOT.glob(g)})
    assert matched == sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "tenants").glob("*/users/*.yaml")
    )
    assert [
        p.name for g in mapping["./editor/schemas/tenant.schema.json"] for p in ROOT.glob(g)
    ] == ["tenant.yaml"]


def test_editor_view_of_the_example_is_valid(exported: tuple[Path, str]) -> None:
    """An editor types YAML itself (numbers become numbers): the shipped example must still
    pass the exported schemas, and a mistake must not."""
    out, _ = exported
    schemas = {n: json.loads((out / n).read_text(encoding="utf-8")) for n in NAMES}
    tenant = yaml.safe_load((ROOT / "tenants" / "contoso" / "tenant.yaml").read_text())
    jsonschema.validate(tenant, schemas["tenant.schema.json"])
    for path in (ROOT / "tenants").glob("*/users/*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schemas["users.schema.json"])
    broken = {
        "users": {"x@contoso.com": {"license": True, "conference_id": "12", "provder": "Microsoft"}}
    }
    errors = list(jsonschema.Draft202012Validator(schemas["users.schema.json"]).iter_errors(broken))
    assert len(errors) == 2


def test_plan_schema_describes_the_json_plan(example_workspace: Workspace) -> None:
    ws = example_workspace
    assert ws.cli("schema", "--out", "s", "-q").output == ""
    plan = ws.cli("plan", "--format", "json")
    assert plan.code == 0, str(plan)
    schema = json.loads((ws.root / "s" / "plan.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(plan.output), schema)


def test_refuses_a_file_as_folder(new_workspace: NewWorkspace) -> None:
    ws = new_workspace()
    target = ws.root / "schemas"
    target.write_text("not a folder")
    result = ws.cli("schema", "--out", str(target))
    assert result.code != 0
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("victim_exists", [True, False], ids=["to-a-file", "dangling"])
def test_a_link_at_a_schemas_name_is_replaced_not_written_through(
    new_workspace: NewWorkspace, victim_exists: bool
) -> None:
    """A pull request can commit ``s/users.schema.json`` as a link to a file of the runner's:
    the export replaces the link and never writes where it points."""
    ws = new_workspace()
    victim = ws.root / "victim.txt"
    if victim_exists:
        victim.write_text("the runner's own file")
    out = ws.root / "s"
    out.mkdir()
    (out / "users.schema.json").symlink_to(victim)
    result = ws.cli("schema", "--out", "s", "-q")
    assert result.code == 0, str(result)
    written = out / "users.schema.json"
    assert not written.is_symlink()
    assert written.read_bytes() == (ROOT / "schemas" / "users.schema.json").read_bytes()
    assert (victim.read_text() == "the runner's own file") if victim_exists else not victim.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)  # no temporary file left
    assert written.stat().st_mode & 0o777 == 0o644  # as an ordinary new file (umask 022)


def test_a_schema_that_cannot_be_written_is_one_line_naming_what_was(
    new_workspace: NewWorkspace,
) -> None:
    ws = new_workspace()
    (ws.root / "s" / "users.schema.json").mkdir(parents=True)
    result = ws.cli("schema", "--out", "s", "-q")
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot write s/users.schema.json (Is a directory); written before it: "
        "s/tenant.schema.json"
    ]
    assert sorted(p.name for p in (ws.root / "s").iterdir()) == NAMES[:2]  # no temporary file
    (ws.root / "file").write_text("x")
    result = ws.cli("schema", "--out", "file/s", "-q")
    assert result.code == 1 and "cannot create file/s (Not a directory)" in result.stderr
