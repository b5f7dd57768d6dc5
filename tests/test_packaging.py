"""A non-editable install must work from any folder: the wheel carries schemas and templates."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from reconciler.emails import TEMPLATE_TYPES
from reconciler.locales import SHIPPED_LOCALES
from tests.helpers.patience import patience

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_schemas_templates_and_entry_point(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=patience(300),
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in ("tenant", "users", "plan"):
        assert f"reconciler/_data/schemas/{schema}.schema.json" in names
    shipped = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "templates").rglob("*")
        if path.is_file()
    }
    assert len(shipped) == len(SHIPPED_LOCALES) * (len(TEMPLATE_TYPES) * 3 + 5)
    for locale in SHIPPED_LOCALES:
        for kind in TEMPLATE_TYPES:
            for part in (".subject.txt", ".txt", ".html"):
                assert f"templates/{locale}/{kind}{part}" in shipped
        assert f"templates/{locale}/GLOSSARY.md" in shipped
    assert {f"reconciler/_data/{name}" for name in shipped} <= names, "every locale, every file"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "reconciler = reconciler.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_documentation_links_nothing_outside_the_repository() -> None:
    """The repository explains itself: every relative link of the README and docs/ lands on a
    file of the repository (a link beside the checkout would be dead in every clone)."""
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(root) or not resolved.exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert broken == []
