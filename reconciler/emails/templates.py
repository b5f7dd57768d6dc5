"""Email templates: one Jinja2 folder per locale, overlaid on the copy shipped with the package.

An administrator may override a single file (say ``templates/fr/enabled.html``) and keep the rest
of the shipped wording, so every lookup tries the configured folder first and the packaged copy
second, locale by locale. A language is never mixed into another: a file missing from both copies
of a locale is an error reported by :func:`check_templates`, not an English stand-in.

Each email type gets three files, ``<type>.subject.txt``, ``<type>.txt`` and ``<type>.html``.
The variables they see are built by ``context.build_context`` only — the one place that
decides which facts an email type may carry — so a PIN or a conference ID can never reach a
template that must not show it (StrictUndefined turns any such reference into an error).

Templates come from pull requests, so they are data, never code (docs/SECURITY.md): they render in
Jinja2's immutable sandbox with only the documented variables, filters and methods, and bounded in
what they may build (:mod:`reconciler.emails.sandbox`), a file must lie inside its templates
folder (a committed symlink cannot read ``/proc/self/environ``), and an error names the file, line
and kind of problem but never a rendered value, which could be a PIN or a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterator
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
    UndefinedError,
    meta,
    nodes,
    select_autoescape,
)
from jinja2.loaders import split_template_path
from jinja2.sandbox import SecurityError

from reconciler.emails.context import (
    PIN_TYPES,
    TEMPLATE_TYPES,
    sample_contexts,
)
from reconciler.emails.plaintext import wrap_text
from reconciler.emails.render_limits import (
    MAX_BUILT,
    MAX_RENDERED_CHARS,
    OverBudget,
    TooLarge,
    render_budget,
)
from reconciler.emails.sandbox import Sandbox
from reconciler.errors import ConfigError, Problem
from reconciler.locales import locale_folders, resolve
from reconciler.model import has_encoded_word
from reconciler.resources import default_templates

PARTS = ("subject.txt", "txt", "html")
"""Template file suffixes of one email type, in the order :meth:`TemplateSet.render` returns."""
MAX_TEMPLATE_BYTES = 256 * 1024


class TemplateFileError(TemplateError):
    """A template file that must not be used: outside its folder, too large, not UTF-8 text."""

    def __init__(self, filename: str, problem: str):
        super().__init__(problem)
        self.filename = filename
        self.problem = problem


class _SubjectNotOneLine(Exception):
    """A subject that would not fit one header line."""


class _SubjectEncodedWord(Exception):
    """A subject that mail programs would decode into other text (:func:`has_encoded_word`)."""


class _ContainedLoader(FileSystemLoader):
    """A FileSystemLoader that only reads regular UTF-8 files that resolve inside their
    templates folder, so a committed symlink cannot pull a system or secret file into an email
    or an error message."""

    def __init__(self, searchpath: list[Path], folders: list[Path]):
        super().__init__(searchpath)
        self._folders = folders

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        pieces = split_template_path(template)
        for searchpath, folder in zip(self.searchpath, self._folders, strict=True):
            filename = os.path.join(searchpath, *pieces)
            if os.path.isfile(filename):
                return _read_contained(filename, folder), os.path.normpath(filename), _unchanged
        raise TemplateNotFound(template)


def _unchanged() -> bool:
    return True


def _read_contained(filename: str, folder: Path) -> str:
    resolved = Path(filename).resolve()
    if not resolved.is_relative_to(folder):
        raise TemplateFileError(
            filename,
            "template file resolves outside its templates folder (a symlink?); "
            "templates must be files inside the folder",
        )
    with open(resolved, "rb") as file:
        data = file.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateFileError(
            filename, f"template file is larger than {MAX_TEMPLATE_BYTES // 1024} KiB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateFileError(filename, "template file is not UTF-8 text") from None


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
        self._directory = directory
        self._roots = roots
        self._loaders: dict[str, _ContainedLoader] = {}
        self._environments: dict[str, Environment] = {}
        self._trees: dict[tuple[str, str], tuple[nodes.Template, str]] = {}
        self._locales: list[str] | None = None

    @property
    def directory(self) -> Path | None:
        """The configured templates folder (absolute), or None for the packaged copy only: what
        another process needs to load the same set."""
        return None if self._directory is None else self._directory.absolute()

    def locales(self) -> list[str]:
        """Locale folders found in either copy (listed once: a run does not add languages)."""
        if self._locales is None:
            self._locales = locale_folders(*self._roots)
        return list(self._locales)

    def resolve_locale(self, *tags: str | None) -> str:
        """The locale folder for these BCP 47 tags (the user's, then the tenant's): the first
        folder found along their fallback chains, else ``en`` (:func:`reconciler.locales.resolve`).
        Only listed folders qualify, so a locale string can never walk the filesystem."""
        return resolve(tags, self.locales())

    def environment(self, locale: str) -> Environment:
        """The Jinja2 environment of one locale (created once, then cached)."""
        if locale not in self._environments:
            self._environments[locale] = Sandbox(
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

    def parsed(self, locale: str, name: str) -> tuple[nodes.Template, str]:
        """``(syntax tree, filename)`` of one template file, parsed once: the layouts and
        macros every type shares are read once per check, not once per type."""
        key = (locale, name)
        if key not in self._trees:
            source, filename = self.source(locale, name)
            self._trees[key] = (self.environment(locale).parse(source, name, filename), filename)
        return self._trees[key]

    def override_path(self, locale: str, name: str) -> Path:
        """Where a file of this set belongs: the configured folder, else the packaged copy."""
        return self._roots[0] / locale / name

    def _loader(self, locale: str) -> _ContainedLoader:
        if locale not in self._loaders:
            self._loaders[locale] = _ContainedLoader(
                [root / locale for root in self._roots], [_resolved(root) for root in self._roots]
            )
        return self._loaders[locale]

    def render(self, locale: str, email_type: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """``(subject, text, html)`` of one email; an unknown locale falls back to ``en``.

        The text part is wrapped to 78 columns (:func:`reconciler.emails.plaintext.wrap_text`).
        Raises ValueError for an unknown type and ConfigError, located in the template and
        never quoting a rendered value, for a template that cannot render this email.
        """
        if email_type not in TEMPLATE_TYPES:
            raise ValueError(f"unknown email type {email_type!r}")
        locale = self.resolve_locale(locale)
        subject, text, html = (
            _render_checked(self.load(locale, f"{email_type}.{part}"), context) for part in PARTS
        )
        return subject, wrap_text(text), html

    def check(self, emails: Collection[tuple[str, str]] | None = None) -> list[Problem]:
        """Render templates with full sample contexts and report what breaks, sorted.

        ``emails``: the ``(locale, type)`` pairs to check, such as an apply's plan sends
        (:meth:`reconciler.plan.Plan.email_kinds`), so an apply renders only what it will send;
        by default every type of every locale found. Sample contexts cover a toll-free number
        set and unset, unique conference IDs on and off, a missing display name, preview mode
        and PIN self-service mode, so a branch that is rarely taken is still exercised.
        Reported: a configured folder that does not exist, syntax errors, undefined variables,
        missing files (when the packaged copy has none either), subjects that are not one line
        or hold an encoded word, and any reference to ``pin`` reachable from the templates of a
        type that must never contain the PIN.
        """
        if self._directory is not None and not self._directory.is_dir():
            return [Problem(os.fspath(self._directory), 1, 1, "templates folder not found")]
        if emails is None:
            emails = [(locale, kind) for locale in self.locales() for kind in TEMPLATE_TYPES]
        problems: set[Problem] = set()
        for locale, email_type in sorted(set(emails)):
            locale = self.resolve_locale(locale)
            for part in PARTS:
                name = f"{email_type}.{part}"
                try:
                    template = self.load(locale, name)
                    if email_type not in PIN_TYPES:
                        problems.update(_pin_references(self, locale, name, email_type))
                    for context in sample_contexts(email_type):
                        _render_checked(template, context)
                except ConfigError as error:
                    problems.update(error.problems)
        return sorted(problems)

    def load(self, locale: str, name: str) -> Template:
        """A loaded template, or ConfigError saying why it cannot be loaded."""
        try:
            return self.environment(locale).get_template(name)
        except TemplateNotFound:
            missing = _display(os.fspath(self.override_path(locale, name)))
            raise ConfigError(
                [Problem(missing, 1, 1, f"missing template {name!r} for locale {locale!r}")]
            ) from None
        except (TemplateSyntaxError, TemplateFileError) as error:
            raise ConfigError([_load_problem(error)]) from None


def _render_checked(template: Template, context: dict[str, Any]) -> str:
    """Render one file, or raise ConfigError at the innermost template line with a message that
    names the kind of problem only: what went wrong may be a PIN or a secret.

    A subject is trimmed and must be a single line without an encoded word (it becomes a
    header). What the template may build and write is bounded by the sandbox
    (:mod:`reconciler.emails.sandbox`): a part of :data:`MAX_RENDERED_CHARS` at most.
    """
    try:
        with render_budget():
            rendered = "".join(template.generate(context))
        if template.name is not None and template.name.endswith(".subject.txt"):
            rendered = rendered.strip()
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in rendered):
                raise _SubjectNotOneLine
            if has_encoded_word(rendered):
                raise _SubjectEncodedWord
    except (TemplateSyntaxError, TemplateFileError) as error:  # in an included or extended file
        raise ConfigError([_load_problem(error)]) from None
    # Whatever a hand-edited template can raise (undefined names, arithmetic, the sandbox...)
    # is reported, never a traceback.
    except Exception as error:
        file, line = _template_location(error.__traceback__, template)
        raise ConfigError([Problem(_display(file), line, 1, _describe(error, file))]) from None
    return rendered


def _describe(error: Exception, file: str) -> str:
    """What a render error was, without its message: that may quote a rendered value. Only the
    name in an undefined-name error is shown, and only when ``file`` spells it out, as a variable
    (``{{ manager }}``) or an attribute (``phone.country``)."""
    if isinstance(error, UndefinedError):
        found = _UNDEFINED_NAME.fullmatch(str(error)) or _UNDEFINED_ATTRIBUTE.fullmatch(str(error))
        if found and found[1] in _names_in(file):
            return f"undefined name {found[1]!r}; {_DOCUMENTED}"
    for kind, message in _RENDER_ERRORS:
        if isinstance(error, kind):
            return message
    return f"{type(error).__name__} while rendering (values are not shown)"


def _names_in(file: str) -> set[str]:
    """Variable and attribute names written in a template file (parsed, never rendered)."""
    try:
        tree = Environment().parse(_read_contained(file, Path(file).resolve().parent))
    except (OSError, TemplateError):
        return set()
    return {node.name for node in tree.find_all(nodes.Name)} | {
        node.attr for node in tree.find_all(nodes.Getattr)
    }


_UNDEFINED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]{0,63})' is undefined")
_UNDEFINED_ATTRIBUTE = re.compile(r"'[^']*' has no attribute '([A-Za-z_][A-Za-z0-9_]{0,63})'")
_DOCUMENTED = "templates may use only the documented variables (README, Email templates)"
_RENDER_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (UndefinedError, f"undefined variable, attribute or key; {_DOCUMENTED}"),
    (
        SecurityError,
        "refused by the template sandbox: no private attributes, only the documented filters "
        "and methods, * and % only on numbers, no **",
    ),
    (TemplateNotFound, "a template it extends, includes or imports was not found"),
    (
        TooLarge,
        f"builds or writes more than {MAX_RENDERED_CHARS // 2**20} MiB at once (text, a list, "
        "a number, a block or the email part); is a width, a count or a loop running away?",
    ),
    (
        OverBudget,
        f"builds and writes more than {MAX_BUILT // 2**20} MiB in all while rendering; are "
        "loops or many variables building large values?",
    ),
    (_SubjectNotOneLine, "an email subject must be one line without control characters"),
    (
        _SubjectEncodedWord,
        "an email subject must not contain an encoded word ('=?...?='), which mail programs "
        "would decode; write it as plain text",
    ),
)


def check_templates(directory: Path | None) -> list[Problem]:
    """Every template of every type in every locale found: what ``validate`` reports, so a
    pull request learns of a broken template in any language (:meth:`TemplateSet.check`)."""
    return TemplateSet(directory).check()


def _load_problem(error: TemplateSyntaxError | TemplateFileError) -> Problem:
    if isinstance(error, TemplateFileError):
        return Problem(_display(error.filename), 1, 1, error.problem)
    return Problem(_display(error.filename), error.lineno or 1, 1, error.message or "syntax error")


def _template_location(trace: TracebackType | None, template: Template) -> tuple[str, int]:
    """The innermost template frame of a render error.

    Jinja2 rewrites tracebacks so frames of template code carry the template's file name and
    line, which lets an error in a shared layout or macro point at that file, not the caller.
    """
    location = (template.filename or "", 1)
    while trace is not None:
        filename = trace.tb_frame.f_code.co_filename
        if filename.endswith((".html", ".txt")):
            location = (filename, trace.tb_lineno)
        trace = trace.tb_next
    return location


def _pin_references(
    templates: TemplateSet, locale: str, name: str, email_type: str
) -> Iterator[Problem]:
    """Every ``pin`` name in ``name`` and the templates it extends, includes or imports."""
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            tree, filename = templates.parsed(locale, current)
        except (TemplateNotFound, TemplateSyntaxError, TemplateFileError):
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


def _display(filename: str | None) -> str:
    """A template path as people read it: relative to the working directory when below it."""
    if not filename:
        return "<template>"
    path = Path(filename)
    try:
        return os.fspath(path.relative_to(Path.cwd()))
    except ValueError:
        return filename


def _resolved(folder: Path) -> Path:
    try:
        return folder.resolve()
    except OSError:
        return folder.absolute()


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
