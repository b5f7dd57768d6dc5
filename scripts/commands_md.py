"""docs/COMMANDS.md from the command line's own help: every command's `--help`, as printed.

    python scripts/commands_md.py          # print it
    python scripts/commands_md.py --write  # rewrite docs/COMMANDS.md

`tests/test_command_reference.py` fails while the file differs from what this prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "COMMANDS.md"
WIDTH = 100

HEADER = """# Command reference

Every command's `--help`, generated from the command line itself (`python
scripts/commands_md.py --write`; a test fails while this file differs). The README's
[command table](../README.md#command-reference) says what each command is for; the options
shared by most commands (`--config`, `--state`, `--mail`, …) are described there too.
"""


def _commands(
    command: click.Command, parent: click.Context | None, name: str
) -> Iterator[tuple[str, str]]:
    context = click.Context(  # as `reconciler … --help` makes it (-h too, from the group)
        command,
        parent=parent,
        info_name=name,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        **command.context_settings,
    )
    yield context.command_path, command.get_help(context)
    if isinstance(command, click.Group):
        for sub in command.list_commands(context):
            child = command.get_command(context, sub)
            if child is not None and not child.hidden:
                yield from _commands(child, context, sub)


def reference() -> str:
    from reconciler.cli import main

    parts = [HEADER]
    for path, text in _commands(main, None, "reconciler"):
        parts.append(f"\n## `{path}`\n\n```text\n{text.rstrip()}\n```\n")
    return "".join(parts)


def main() -> None:
    text = reference()
    if sys.argv[1:] == ["--write"]:
        OUT.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
