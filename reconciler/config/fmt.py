"""``reconciler fmt``: which files it formats, and rewriting them.

With no path, every tenant of the configuration folder; a path is a tenant folder, a folder of
tenant folders, or a tenant or users file. A file is rewritten only as the regular file it is
(never a symbolic link, replaced or written through) and never through a folder leading out of
the configuration folder, which the loader does not read either; each is replaced in one step,
so a killed fmt leaves the old file or the new one. How a file is laid out is ``fmt_layout.py``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from reconciler.config.fmt_layout import Kind, format_yaml
from reconciler.config.fmt_source import FormatError
from reconciler.config.loader import (
    LEAVES_CONFIG,
    MAX_FILE_BYTES,
    inside,
    nothing_to_read,
    tenant_files,
    tenant_names,
)
from reconciler.errors import Problem


def changed_files(
    paths: Sequence[Path], config: Path
) -> tuple[list[tuple[Path, str]], int, list[Problem]]:
    """What ``fmt`` would write: (file, canonical text) for every file not already canonical,
    how many files were looked at, and every problem (then nothing may be written).

    With no path, every tenant under ``config``; a path is a tenant folder (it holds
    ``tenant.yaml``), a folder of tenant folders, or a tenant or users file.
    """
    if not paths and not tenant_names(config):
        return [], 0, [Problem(str(config), 1, 1, nothing_to_read(config))]
    files: list[tuple[Path, Kind]] = []
    problems: list[Problem] = []
    for path in paths or [config]:
        found, bad = _files_under(path, config)
        files += found
        problems += bad
    changes = []
    for path, kind in dict.fromkeys(files):
        raw = _read(path, problems)
        if raw is None:
            continue
        try:
            text = format_yaml(raw, str(path), kind)
        except FormatError as exc:
            problems += exc.problems
            continue
        if text.encode("utf-8") != raw:
            changes.append((path, text))
    return changes, len(files), problems


def _files_under(path: Path, config: Path) -> tuple[list[tuple[Path, Kind]], list[Problem]]:
    if not path.exists():
        return [], [Problem(str(path), 1, 1, "no such file or folder")]
    if (link := _leaving(path, config)) is not None:
        return [], [Problem(str(link), 1, 1, LEAVES_CONFIG)]
    if not path.is_dir():
        kind = kind_of(path)
        if kind is None:
            return [], [
                Problem(
                    str(path),
                    1,
                    1,
                    ("not a tenant or users file (tenant.yaml, users.yaml or users/**/*.yaml)"),
                )
            ]
        return [(path, kind)], []
    if (path / "tenant.yaml").exists() or (path / "users").is_dir():
        folders = [(path.parent, path.name)]
    else:
        folders = [(path, name) for name in tenant_names(path)]
        if not folders:
            return [], [
                Problem(str(path), 1, 1, ("no tenant folders here (expected TENANT/tenant.yaml)"))
            ]
    found: list[tuple[Path, Kind]] = []
    problems: list[Problem] = []
    for root, name in folders:
        files, bad = tenant_files(root, name)
        problems += [Problem(str(root / p.file), p.line, p.column, p.message) for p in bad]
        found += [(root / file, kind_of(root / file) or "users") for file in files]
    return found, problems


def _leaving(path: Path, config: Path) -> Path | None:
    """The first folder under the configuration folder on the way to ``path`` (itself
    included) that leads out of it: the loader reads nothing through such a link, so fmt
    rewrites nothing through it either, whichever file or folder under it it is given."""
    root = Path(os.path.abspath(config))
    full = Path(os.path.abspath(path))
    if not full.is_relative_to(root):
        return None
    folder = config
    for part in full.relative_to(root).parts:
        folder /= part
        if not folder.is_dir():
            return None
        if not inside(folder, config):
            return folder
    return None


def kind_of(path: Path) -> Kind | None:
    """What a file holds, by its name and place in a tenant folder."""
    if path.name == "tenant.yaml":
        return "tenant"
    if path.match("*.y*ml") and (path.name == "users.yaml" or "users" in path.parent.parts):
        return "users"
    return None


def _read(path: Path, problems: list[Problem]) -> bytes | None:
    """A regular file's bytes. ``fmt`` rewrites files, so a symbolic link is refused rather
    than replaced by a file or written through to wherever it points."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            why = "a symbolic link; fmt formats regular files only (name its target)"
        elif not stat.S_ISREG(info.st_mode):
            why = "not a regular file"
        elif info.st_size > MAX_FILE_BYTES:
            why = f"larger than {MAX_FILE_BYTES // 2**20} MiB"
        else:
            with open(path, "rb") as handle:
                return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        why = f"unreadable: {exc.strerror or exc}"
    problems.append(Problem(str(path), 1, 1, f"cannot format this file: {why}"))
    return None


def write(path: Path, text: str) -> None:
    """Replace the file in one step (a killed fmt leaves the old or the new file, never half
    of one), keeping its permissions."""
    mode = stat.S_IMODE(path.stat().st_mode)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
