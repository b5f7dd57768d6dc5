"""Email templates: one Jinja2 folder per locale, overlaid on the copy shipped with the package.

An administrator may override a single file (say ``templates/fr/enabled.html``) and keep the rest
of the shipped wording, so every lookup tries the configured folder first and the packaged copy
second, locale by locale. A language is never mixed into another: a file missing from both copies
of a locale is an error reported by :func:`check_templates`, not an English stand-in.

Each email type gets three files, ``<type>.subject.txt``, ``<type>.txt`` and ``<type>.html``.
The variables they see are built by :func:`build_context` only — the one place that decides which
facts an email type may carry — so a PIN or a conference ID can never reach a template that must
not show it (StrictUndefined turns any such reference into an error).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    select_autoescape,
)

from reconciler.errors import Problem
from reconciler.model import EMAIL_TYPES
from reconciler.resources import default_templates

FALLBACK_LOCALE = "en"
PIN_TYPES = frozenset({"enabled", "pin-reset"})
"""The only email types that carry the PIN (SPEC §4)."""
DETAIL_TYPES = frozenset(EMAIL_TYPES) - {"disabled"}
"""Email types that show the conference ID and dial-in numbers."""
PARTS = ("subject.txt", "txt", "html")
"""Template file suffixes of one email type, in the order :meth:`TemplateSet.render` returns."""


@dataclass(frozen=True)
class PhoneNumber:
    """A bridge number as templates show it: ``display`` for people, ``e164`` for ``tel:``."""

    e164: str
    display: str
    location: str | None = None


def build_context(
    email_type: str,
    *,
    display_name: str | None,
    upn: str,
    email: str,
    meeting_update_tool_url: str,
    unique_conference_ids: bool,
    preview: bool,
    conference_id: str | None = None,
    dial_in: PhoneNumber | None = None,
    toll_free: PhoneNumber | None = None,
    pin: str | None = None,
) -> dict[str, Any]:
    """The template variables of one email, holding exactly what SPEC §4 lets that type show.

    Raises ValueError when the caller offers a PIN to a type that must never contain one, omits
    it where it is the point of the email, or omits the conference details a type shows.
    """
    if email_type not in EMAIL_TYPES:
        raise ValueError(f"unknown email type {email_type!r}")
    context: dict[str, Any] = {
        "preview": preview,
        "display_name": display_name,
        "upn": upn,
        "email": email,
        "meeting_update_tool_url": meeting_update_tool_url,
        "unique_conference_ids": unique_conference_ids,
    }
    if email_type in PIN_TYPES:
        if not pin:
            raise ValueError(f"a {email_type!r} email needs the PIN")
        context["pin"] = pin
    elif pin is not None:
        raise ValueError(f"a {email_type!r} email must never contain the PIN")
    if email_type in DETAIL_TYPES:
        if not conference_id or dial_in is None:
            raise ValueError(f"a {email_type!r} email needs the conference ID and dial-in number")
        context.update(conference_id=conference_id, dial_in=dial_in, toll_free=toll_free)
    return context


class TemplateSet:
    """Jinja2 environments for one templates folder, falling back to the packaged copy
    (:func:`reconciler.resources.default_templates`) for anything the folder lacks.

    ``directory=None`` uses the packaged copy only. A directory that does not exist simply
    contributes nothing, like a locale folder it lacks.
    """

    def __init__(self, directory: Path | None = None):
        packaged = default_templates()
        # Absolute search paths keep lookups stable if the working directory changes later;
        # error messages are made relative again by _display.
        roots = [packaged] if directory is None else [directory.absolute(), packaged]
        if directory is not None and _same_dir(directory, packaged):
            roots = [directory.absolute()]
        self._roots = roots
        self._loaders: dict[str, FileSystemLoader] = {}
        self._environments: dict[str, Environment] = {}

    def locales(self) -> list[str]:
        """Locale folders found in either copy (``_``- and ``.``-prefixed names are not locales)."""
        found = {
            child.name
            for root in self._roots
            if root.is_dir()
            for child in root.iterdir()
            if child.is_dir() and not child.name.startswith(("_", "."))
        }
        return sorted(found)

    def resolve_locale(self, *candidates: str | None) -> str:
        """The first candidate that has a template folder, else ``en`` (SPEC §4: user locale,
        else tenant locale, else English). Only listed folders qualify, so a locale string can
        never walk the filesystem."""
        available = set(self.locales())
        return next((c for c in candidates if c in available), FALLBACK_LOCALE)

    def environment(self, locale: str) -> Environment:
        """The Jinja2 environment of one locale (created once, then cached)."""
        if locale not in self._environments:
            self._environments[locale] = Environment(
                loader=self._loader(locale),
                undefined=StrictUndefined,
                autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                keep_trailing_newline=True,
                # Plain-text bodies are whitespace-sensitive; these keep tags from leaving
                # blank lines and indentation behind.
                trim_blocks=True,
                lstrip_blocks=True,
            )
        return self._environments[locale]

    def source(self, locale: str, name: str) -> tuple[str, str]:
        """``(source, filename)`` of one template file as the environment would load it."""
        source, filename, _ = self._loader(locale).get_source(self.environment(locale), name)
        return source, filename

    def override_path(self, locale: str, name: str) -> Path:
        """Where a file of this set belongs: the configured folder, else the packaged copy."""
        return self._roots[0] / locale / name

    def _loader(self, locale: str) -> FileSystemLoader:
        if locale not in self._loaders:
            self._loaders[locale] = FileSystemLoader([root / locale for root in self._roots])
        return self._loaders[locale]

    def render(self, locale: str, email_type: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """``(subject, text, html)`` of one email; an unknown locale falls back to ``en``.

        Raises ValueError for an unknown type or a subject that is not one line, and Jinja2's
        TemplateError for a broken or missing template.
        """
        if email_type not in EMAIL_TYPES:
            raise ValueError(f"unknown email type {email_type!r}")
        environment = self.environment(self.resolve_locale(locale))
        subject, text, html = (
            _render_part(environment.get_template(f"{email_type}.{part}"), context)
            for part in PARTS
        )
        return subject, text, html


def _render_part(template: Template, context: dict[str, Any]) -> str:
    """Render one file; a subject is trimmed and must be a single line (it becomes a header)."""
    rendered = template.render(context)
    if template.name is not None and template.name.endswith(".subject.txt"):
        rendered = rendered.strip()
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in rendered):
            raise ValueError("an email subject must be one line without control characters")
    return rendered


def check_templates(directory: Path | None) -> list[Problem]:
    """Render every type x every locale found with full sample contexts and report what breaks.

    Sample contexts cover a toll-free number set and unset, unique conference IDs on and off, a
    missing display name and preview mode, so a branch that is rarely taken is still exercised.
    Reported: syntax errors, undefined variables, missing files (when the packaged copy has none
    either), subjects that are not one line, and any reference to ``pin`` reachable from the
    templates of a type that must never contain the PIN.
    """
    if directory is not None and not directory.is_dir():
        return [Problem(os.fspath(directory), 1, 1, "templates folder not found")]
    templates = TemplateSet(directory)
    problems: set[Problem] = set()
    for locale in templates.locales():
        environment = templates.environment(locale)
        for email_type in EMAIL_TYPES:
            for part in PARTS:
                name = f"{email_type}.{part}"
                try:
                    template = environment.get_template(name)
                except TemplateNotFound:
                    missing = _display(os.fspath(templates.override_path(locale, name)))
                    problems.add(
                        Problem(missing, 1, 1, f"missing template {name!r} for locale {locale!r}")
                    )
                    continue
                except TemplateSyntaxError as error:
                    problems.add(_syntax_problem(error))
                    continue
                if email_type not in PIN_TYPES:
                    problems.update(_pin_references(templates, locale, name, email_type))
                for context in _sample_contexts(email_type):
                    problem = _render_problem(template, context)
                    if problem is not None:
                        problems.add(problem)
                        break
    return sorted(problems)


def _render_problem(template: Template, context: dict[str, Any]) -> Problem | None:
    """The first error rendering ``template``, located at the innermost template line."""
    try:
        _render_part(template, context)
    except TemplateSyntaxError as error:  # in an included or extended file
        return _syntax_problem(error)
    except TemplateNotFound as error:
        file, line = _template_location(error.__traceback__, template)
        return Problem(file, line, 1, f"template {error.name!r} not found")
    # A checker reports whatever a hand-edited template can raise (undefined variables, bad
    # filters, arithmetic...) instead of crashing on the first one.
    except Exception as error:
        file, line = _template_location(error.__traceback__, template)
        message = error.message if isinstance(error, TemplateError) else None
        return Problem(file, line, 1, message or f"{type(error).__name__}: {error}")
    return None


def _syntax_problem(error: TemplateSyntaxError) -> Problem:
    return Problem(_display(error.filename), error.lineno or 1, 1, error.message or "syntax error")


def _template_location(trace: TracebackType | None, template: Template) -> tuple[str, int]:
    """The innermost template frame of a render error.

    Jinja2 rewrites tracebacks so frames of template code carry the template's file name and
    line, which lets an error in a shared layout or macro point at that file, not the caller.
    """
    location = (_display(template.filename), 1)
    while trace is not None:
        filename = trace.tb_frame.f_code.co_filename
        if filename.endswith((".html", ".txt")):
            location = (_display(filename), trace.tb_lineno)
        trace = trace.tb_next
    return location


def _pin_references(
    templates: TemplateSet, locale: str, name: str, email_type: str
) -> Iterator[Problem]:
    """Every ``pin`` name in ``name`` and the templates it extends, includes or imports."""
    environment = templates.environment(locale)
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            source, filename = templates.source(locale, current)
            tree = environment.parse(source, current, filename)
        except (TemplateNotFound, TemplateSyntaxError):
            continue  # reported by the render pass, with its location
        for node in tree.find_all(nodes.Name):
            if node.name == "pin":
                yield Problem(
                    _display(filename),
                    node.lineno,
                    1,
                    f"{email_type!r} emails must never contain the PIN, "
                    "but this template references 'pin'",
                )
        pending.extend(ref for ref in meta.find_referenced_templates(tree) if ref)


def _sample_contexts(email_type: str) -> Iterator[dict[str, Any]]:
    """Realistic contexts for ``email_type`` over every combination templates branch on."""
    for toll_free, unique_ids, display_name, preview in itertools.product(
        (PhoneNumber("+18005550199", "+1 800-555-0199", None), None),
        (True, False),
        ("Alice Martin", None),
        (False, True),
    ):
        yield build_context(
            email_type,
            display_name=display_name,
            upn="alice@contoso.com",
            email="alice@contoso.com",
            meeting_update_tool_url="https://aka.ms/meetingupdatetool",
            unique_conference_ids=unique_ids,
            preview=preview,
            conference_id="8412345" if email_type in DETAIL_TYPES else None,
            dial_in=(
                PhoneNumber("+14255550100", "+1 425-555-0100", "Redmond, WA")
                if email_type in DETAIL_TYPES
                else None
            ),
            toll_free=toll_free if email_type in DETAIL_TYPES else None,
            pin=("••••••" if preview else "48151") if email_type in PIN_TYPES else None,
        )


def _display(filename: str | None) -> str:
    """A template path as people read it: relative to the working directory when below it."""
    if not filename:
        return "<template>"
    path = Path(filename)
    try:
        return os.fspath(path.relative_to(Path.cwd()))
    except ValueError:
        return filename


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
