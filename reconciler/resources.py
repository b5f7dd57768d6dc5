"""Where the data folders (schemas, templates) live.

A source checkout keeps them at the repository top; a wheel carries them inside the package as
``reconciler/_data`` so a non-editable install works from any folder.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The packaged copy of a data folder, else the checkout's."""
    packaged = _PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / name


def schema_path(name: str) -> Path:
    return data_dir("schemas") / name


def default_templates() -> Path:
    return data_dir("templates")
