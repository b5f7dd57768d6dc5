"""docs/COMMANDS.md is the command line's own help: a command whose help changes without the
docs fails here (regenerate with ``python scripts/commands_md.py --write``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    """``scripts/commands_md.py``, which is not a package module."""
    spec = importlib.util.spec_from_file_location(
        "commands_md", ROOT / "scripts" / "commands_md.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _words(text: str) -> str:
    """The text without its layout: click wraps help to the width it is given."""
    return re.sub(r"\s+", " ", text).strip()


def test_the_command_reference_is_the_help_of_every_command() -> None:
    written = (ROOT / "docs" / "COMMANDS.md").read_text(encoding="utf-8")
    assert _words(written) == _words(_generator().reference()), (
        "docs/COMMANDS.md differs from the commands' --help: "
        "run python scripts/commands_md.py --write"
    )


def test_every_command_is_in_the_reference_once() -> None:
    from reconciler.cli import main

    written = (ROOT / "docs" / "COMMANDS.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## `(reconciler[^`]*)`$", written, re.MULTILINE)
    names = ["reconciler"] + [
        f"reconciler {name}"
        for name in main.list_commands(None)  # type: ignore[arg-type]
    ]
    assert len(sections) == len(set(sections))
    assert set(names) <= set(sections)
    assert "reconciler state new-key" in sections


def test_a_changed_help_text_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.cli import main

    generator = _generator()
    before = generator.reference()
    monkeypatch.setattr(main.commands["plan"], "help", "Something else.")
    assert _words(generator.reference()) != _words(before)
