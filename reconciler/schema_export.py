"""``reconciler schema --out DIR``: the JSON Schemas, for editors and CI, from the packaged copy.

The schemas are the single source of the configuration's shape (the validator reads the same
files), so an editor that uses the exported copies flags exactly what ``validate`` would flag at
the schema level. They are copied byte for byte.

Each is written in one step (:mod:`reconciler.files`): a symbolic link found at its name (a pull
request can commit one) is replaced, never written through to the file it points at.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.errors import UserError
from reconciler.files import written_in_one_step
from reconciler.resources import schema_path

SCHEMAS = ("tenant.schema.json", "users.schema.json", "plan.schema.json", "drift.schema.json")
"""What is exported: the tenant file, the users files, the JSON plan and the JSON drift report."""

VSCODE_SETTINGS = """{{
  "yaml.schemas": {{
    "{dir}/tenant.schema.json": ["tenants/*/tenant.yaml"],
    "{dir}/users.schema.json": ["tenants/*/users.yaml", "tenants/*/users/**/*.yaml"]
  }}
}}
"""
"""A ``.vscode/settings.json`` mapping the files to their schemas (Red Hat YAML extension)."""


def export_schemas(out: Path) -> list[Path]:
    """Copy every schema into ``out`` (created if needed); the written paths, in order."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create {out} ({exc.strerror or exc}); nothing was written"
        ) from None
    written: list[Path] = []
    for name in SCHEMAS:
        source = schema_path(name)
        if not source.is_file():
            raise UserError(f"packaged schema {name} not found at {source}; reinstall the package")
        target = out / name
        if target.exists() and target.resolve() == source.resolve():
            written.append(target)  # exporting onto the checkout's own copy: nothing to do
            continue
        try:
            with written_in_one_step(target, binary=True) as file:
                file.write(source.read_bytes())
        except OSError as exc:
            raise UserError(
                f"cannot write {target} ({exc.strerror or exc}); written before it: "
                f"{', '.join(map(str, written)) or 'none'}"
            ) from None
        written.append(target)
    return written


def vscode_settings(out: Path) -> str:
    """The ``yaml.schemas`` setting for schemas exported to ``out`` (relative to the workspace)."""
    text = out.as_posix()
    if not out.is_absolute() and not text.startswith("."):
        text = f"./{text}"
    return VSCODE_SETTINGS.format(dir=text)
