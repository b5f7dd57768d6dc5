"""A non-editable install must work from any folder: the wheel carries schemas and templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_schemas_templates_and_entry_point(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in ("tenant", "users", "plan"):
        assert f"reconciler/_data/schemas/{schema}.schema.json" in names
    for locale in ("en", "fr"):
        for kind in ("enabled", "details-changed", "pin-reset", "conference-info", "disabled"):
            for part in (".subject.txt", ".txt", ".html"):
                assert f"reconciler/_data/templates/{locale}/{kind}{part}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "reconciler = reconciler.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
