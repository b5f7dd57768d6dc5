"""An export file read: its columns and its rows, for ``init`` (every row at once) and
``drift`` (one row at a time).

PowerShell writes the same object as CSV (``Export-Csv``) or JSON (``ConvertTo-Json``), its
property names in whatever case the cmdlet gives them: a row is read with its column names
lower-cased, and each field of ours is found under whichever of the cmdlets' names holds it
(:data:`USER_COLUMNS`). Every row keeps its place (``FILE:LINE``, ``FILE:entry N``) so that any
problem found later, in a row or in what would be written from it, is named in the export's
terms; a file that cannot be read is a problem of the file, never a traceback.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.config.export_text import (
    CHANGED,
    MAX_EXPORT_BYTES,
    MAX_JSON_DEPTH,
    ExportText,
    TooDeep,
    json_entries,
    lines,
)

USER_COLUMNS = {
    "upn": ("userprincipalname", "sipaddress", "upn", "identity"),
    "display_name": ("displayname",),
    "conference_id": ("conferenceid",),
    "dial_in_number": ("servicenumber", "tollnumber"),
    "toll_free_number": ("tollfreeservicenumber", "tollfreenumber"),
    "license": ("license", "licensed", "audioconferencing"),
    "provider": ("provider", "audioconferencingprovider"),
    "email": ("sendemailtoaddress", "email"),
    "locale": ("locale",),
    "location": ("location", "city"),
    "toll_free_location": ("tollfreelocation", "tollfreecity"),
}
"""Our field → the column or property names that hold it (case-insensitive). ``location`` is
that of the ServiceNumber (also read inside a number object, and a bridge export's entries)."""


@dataclass(frozen=True, order=True)
class Place:
    """Where a value came from: line ``index`` of a CSV export, entry ``index`` of a JSON one,
    or (``index`` 0) a whole file or a command-line option. Places sort by file, then line."""

    file: str
    index: int = 0
    entry: bool = False

    def __str__(self) -> str:
        if not self.index:
            return self.file
        return f"{self.file}:{'entry ' if self.entry else ''}{self.index}"


@dataclass(frozen=True)
class ExportProblem:
    """One line for the admin, ``place: message``, named in the exports' terms."""

    place: Place
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}"


@dataclass
class Export:
    """Rows read from a file: ``(place, {lower-case column: value})``, and the columns it has
    (a CSV's header, every key of a JSON export's objects)."""

    file: str
    rows: list[tuple[Place, dict[str, Any]]] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    problems: list[ExportProblem] = field(default_factory=list)

    def has(self, name: str) -> bool:
        """Whether the export has a column for our field ``name`` (even one empty in every
        row: then the column still says what it says, and nothing is assumed)."""
        return not self.columns.isdisjoint(USER_COLUMNS[name])


Row = tuple[Place, dict[str, Any]]
"""One row of an export: where it is, and its values by lower-case column name."""


def read_export(path: Path) -> Export:
    """Every row of an export at once (:func:`open_export`), for ``init``, which writes them
    all."""
    result, rows = open_export(path)
    result.rows.extend(rows)
    return result


def open_export(path: Path) -> tuple[Export, Iterator[Row]]:
    """An export's columns, and its rows one at a time: a CSV (``#TYPE`` line, BOM and CRLF
    accepted) or JSON export (an array of objects, or one object), in UTF-8 (with or without a
    BOM) or, after its BOM, UTF-16 or UTF-32 (what Windows PowerShell 5's ``>`` writes); a file
    that cannot be read is a problem of the file, never a traceback. The file is read a piece
    at a time (``export_text.py``): 300,000 users are never in memory at once, as text or as
    rows. Problems are added to the returned ``Export`` as the rows are read."""
    result = Export(str(path))
    text = ExportText(path, MAX_EXPORT_BYTES)
    if text.problem:
        _text_problem(text, result)
        return result, iter(())
    if path.suffix.lower() == ".json" or text.starts_like_json():
        return result, _json_rows(text, result)
    return result, _csv_rows(text, result)


def _text_problem(text: ExportText, export: Export) -> None:
    if text.problem:
        line, message = text.problem
        export.problems.append(ExportProblem(Place(export.file, line), message))


def _json_rows(text: ExportText, export: Export) -> Iterator[Row]:
    """Reads the document once now, an entry at a time and keeping none, for its columns and
    any problem (syntax, depth, text that is not text); then reads it again, the rows decoded
    as they are asked for."""
    unreadable: list[int] = []
    try:
        for index, item in enumerate(json_entries(iter(text)), start=1):
            if isinstance(item, dict):
                export.columns.update(map(_column, item))
            if not _is_text(item):
                unreadable.append(index)
    except (ValueError, RecursionError, TooDeep) as exc:
        if not text.problem:  # else what JSON saw is a consequence of the text stopping
            export.problems.append(_json_problem(export, exc))
    if text.problem:
        _text_problem(text, export)
    export.problems.extend(
        ExportProblem(Place(export.file, n, entry=True), "holds text that is not Unicode text")
        for n in unreadable
    )
    if export.problems:
        return iter(())
    return _json_objects(text, export)


def _json_problem(export: Export, exc: Exception) -> ExportProblem:
    if isinstance(exc, ValueError):
        return ExportProblem(Place(export.file, getattr(exc, "lineno", 1)), f"not JSON ({exc})")
    return ExportProblem(
        Place(export.file), f"nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    )


def _is_text(item: Any) -> bool:
    """Whether every text in ``item`` can be written as UTF-8 (JSON may spell a lone surrogate,
    ``"\\ud800"``, which no YAML file or email can hold)."""
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_objects(text: ExportText, export: Export) -> Iterator[Row]:
    try:
        entries = enumerate(json_entries(iter(text), check_depth=False), start=1)
        for index, item in entries:
            place = Place(export.file, index, entry=True)
            if isinstance(item, dict):
                yield place, lower_keys(item)
            else:
                export.problems.append(ExportProblem(place, "expected an object"))
    except (ValueError, RecursionError, TooDeep):  # read fine once: changed since
        if not text.problem:
            text.problem = (0, CHANGED)
    _text_problem(text, export)


def _csv_rows(text: ExportText, export: Export) -> Iterator[Row]:
    """Reads the header now (its columns); the rows as they are asked for."""
    rows = lines(text)
    first = next(rows, "")
    skipped = 1 if first.startswith("#TYPE") else 0
    reader = csv.DictReader(rows if skipped else itertools.chain([first], rows))
    try:
        export.columns.update(map(_column, reader.fieldnames or ()))
    except csv.Error as exc:
        _csv_problem(exc, reader, skipped, export)
        return iter(())
    return _csv_records(reader, skipped, text, export)


def _csv_records(
    reader: csv.DictReader[str], skipped: int, text: ExportText, export: Export
) -> Iterator[Row]:
    try:
        for row in reader:
            place = Place(export.file, reader.line_num + skipped)
            yield place, lower_keys({k: v for k, v in row.items() if k is not None})
    except csv.Error as exc:
        _csv_problem(exc, reader, skipped, export)
    _text_problem(text, export)


def _csv_problem(exc: csv.Error, reader: csv.DictReader[str], skipped: int, export: Export) -> None:
    # DictReader counts a line once it is read: its reader's count
    place = Place(export.file, reader.reader.line_num + skipped)
    limit = csv.field_size_limit()
    why = (
        f"a field is longer than {limit:,} characters (a quote left open?)"
        if "field limit" in str(exc)
        else f"not CSV ({exc})"
    )
    export.problems.append(ExportProblem(place, why))


def _column(name: Any) -> str:
    return str(name).strip().lower()


def lower_keys(item: Mapping[str, Any]) -> dict[str, Any]:
    """An object's keys as columns are read (:data:`USER_COLUMNS`): PowerShell ignores case."""
    return {_column(k): v for k, v in item.items()}


def field_value(row: Mapping[str, Any], name: str) -> Any:
    """Our field ``name`` in a row: the first of its columns (:data:`USER_COLUMNS`) not empty."""
    for column in USER_COLUMNS[name]:
        value = row.get(column)
        if value not in (None, ""):
            return value
    return None
