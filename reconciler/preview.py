"""Email previews for reviewers: every email the plan would send, rendered but never sent.

``reconciler preview --out DIR`` writes, per planned email, the RFC 5322 message (``.eml``) and a
page (``.html``) showing its headers, the HTML body (in a sandboxed frame) and the plain-text
body, plus ``index.html`` listing them by tenant, user and type with the plan's reasons.

A plan reaches only the languages its users read, so ``_locales/<locale>/<type>.html`` also shows
every email type in every locale the templates have, with sample values: a reviewer of a
template change sees all of them, whatever the plan holds.

A preview is harmless by construction:

* the PIN is the visible mask ``••••••`` (``compose_messages(preview=True)``): no PIN is ever
  generated, so none can leak through an artifact; a tenant in PIN self-service mode
  (``email.pin: self_service``) has no PIN to mask, and when every tenant of the plan is in that
  mode the sample pages show none either;
* every message says it is a preview (banner in the body, ``[PREVIEW]`` in the subject);
* the state is only read: a missing SQLite file is not created, nothing is committed, no lock
  is taken and no transport is opened.

Pages are rendered with Jinja2 under ``autoescape=True``: a display name such as
``<script>…`` reaches the page as text. The email body goes into an ``<iframe srcdoc>`` with an
empty ``sandbox`` (no scripts, no same-origin access) and the pages carry a restrictive
Content-Security-Policy, so an artifact opened from a CI run cannot run anything.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from jinja2 import DictLoader, Environment

from reconciler.emails import SELF_SERVICE_TYPES, TEMPLATE_TYPES, TemplateSet, sample_context
from reconciler.emails.plan_messages import compose_messages
from reconciler.errors import UserError
from reconciler.manager import Manager
from reconciler.model import EMAIL_TYPES, EmailType, pin_self_service_url
from reconciler.plan import Plan
from reconciler.sending import default_sender

MARKER_FILE = ".reconciler-preview"
"""Marks a folder as written by ``preview``: only such a folder is ever emptied by a new run."""
PREVIEW_LINEAGE = "preview"
"""Prefixed to the lineage in preview Message-IDs."""
SAMPLES_DIR = "_locales"
"""Folder of the every-type-in-every-locale pages (no tenant is named ``_…``)."""


@dataclass(frozen=True)
class PreviewEmail:
    """One rendered preview, as the index lists it."""

    tenant: str
    user: str
    to: str
    type: EmailType
    reasons: tuple[str, ...]
    suppressed: bool
    subject: str
    sender: str
    eml: str
    """Path of the ``.eml`` file, relative to the output folder (``/``-separated)."""
    page: str
    """Path of the ``.html`` page, relative to the output folder."""
    locale: str = "en"
    """The locale the email is written in."""


@dataclass(frozen=True)
class SamplePage:
    """One email type in one locale, rendered with sample values."""

    locale: str
    type: str
    subject: str
    page: str
    """Path of the ``.html`` page, relative to the output folder."""
    self_service: bool = False
    """Rendered in PIN self-service mode (no PIN, Microsoft's page instead)."""

    @property
    def label(self) -> str:
        """The column of the index this page is listed under."""
        return f"{self.type} (self_service)" if self.self_service else self.type


@dataclass(frozen=True)
class PreviewResult:
    out: Path
    emails: list[PreviewEmail]
    samples: list[SamplePage]

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def write_previews(manager: Manager, out: Path) -> PreviewResult:
    """Plan, compose every planned email in preview mode and write the preview folder."""
    manager.read_only = True
    loaded = manager.load()
    plan = manager.plan(loaded, manager.tenant_names(loaded))
    return render_plan_previews(manager, plan, out)


def render_plan_previews(manager: Manager, plan: Plan, out: Path) -> PreviewResult:
    """Write the previews of ``plan`` to ``out`` (emptied first when it holds an older preview)."""
    # Nothing is sent, so SMTP's required --default-from is not demanded here.
    default = default_sender(manager.options.mail, manager.options.default_from, sending=False)
    _prepare(out)
    emails: list[PreviewEmail] = []
    pages: list[tuple[PreviewEmail, EmailMessage]] = []
    for tenant_plan in plan.tenants:
        if tenant_plan.config is None or not tenant_plan.emails:
            continue
        applied = tenant_plan.applied
        # Deterministic, but never the Message-ID apply will give the real message: a preview
        # forwarded by hand must not make a downstream system drop the real email as a duplicate.
        lineage = f"{PREVIEW_LINEAGE}:{applied.lineage if applied else '-'}"
        serial = (applied.serial if applied else 0) + 1
        messages = compose_messages(
            manager.templates, tenant_plan, lineage, serial, default, preview=True
        )
        folder = out / tenant_plan.name
        folder.mkdir(exist_ok=True)
        for number, (planned, message) in enumerate(
            zip(tenant_plan.emails, messages, strict=True), start=1
        ):
            stem = f"{number:04d}-{_safe(planned.user)}-{planned.type}"
            (folder / f"{stem}.eml").write_bytes(message.data)
            parsed = BytesParser(policy=policy.default).parsebytes(message.data)
            assert isinstance(parsed, EmailMessage)
            entry = PreviewEmail(
                tenant=tenant_plan.name,
                user=planned.user,
                to=planned.to,
                type=planned.type,
                reasons=planned.reasons,
                suppressed=planned.suppressed,
                subject=str(parsed["Subject"]),
                sender=str(parsed["From"]),
                eml=f"{tenant_plan.name}/{stem}.eml",
                page=f"{tenant_plan.name}/{stem}.html",
                locale=planned.locale,
            )
            emails.append(entry)
            pages.append((entry, parsed))
    for entry, parsed in pages:
        (out / entry.page).write_text(_email_page(entry, parsed), encoding="utf-8")
    modes = {pin_self_service_url(t.config.tenant) is not None for t in plan.tenants if t.config}
    samples = _write_samples(manager.templates, out, modes or {False})
    (out / "index.html").write_text(_index_page(plan, emails, samples), encoding="utf-8")
    return PreviewResult(out, emails, samples)


def _write_samples(templates: TemplateSet, out: Path, self_service: set[bool]) -> list[SamplePage]:
    """Every template type in every locale emails can be written in, rendered with sample
    values and the PIN masked, one page each under :data:`SAMPLES_DIR`, in the PIN modes of the
    plan's tenants (``self_service``: True for ``email.pin: self_service``, False for
    ``generated``). A plan of self-service tenants only shows no PIN, not even masked; one with
    both modes adds ``<type>.self-service.html`` for the types the mode words differently. A
    folder no tag can reach (its name is not a language tag) is left out: no user would ever
    read it."""
    samples = []
    for locale in templates.locales():
        if templates.resolve_locale(locale) != locale:
            continue
        folder = out / SAMPLES_DIR / _safe(locale)
        folder.mkdir(parents=True, exist_ok=True)
        for email_type, mode in _sample_kinds(self_service):
            subject, text, html = templates.render(
                locale, email_type, sample_context(email_type, preview=True, pin_self_service=mode)
            )
            suffix = ".self-service" if mode and False in self_service else ""
            page = f"{SAMPLES_DIR}/{_safe(locale)}/{email_type}{suffix}.html"
            sample = SamplePage(locale, email_type, subject, page, mode)
            (out / sample.page).write_text(
                _SAMPLE.render(s=sample, html=html, text=text, csp=_CSP, style=_STYLE),
                encoding="utf-8",
            )
            samples.append(sample)
    return samples


def _sample_kinds(self_service: set[bool]) -> list[tuple[str, bool]]:
    """``(type, self-service mode)`` of each sample page of a locale, in the index's order."""
    kinds = [(t, False) for t in TEMPLATE_TYPES] if False in self_service else []
    if True in self_service:
        kinds += [(t, True) for t in TEMPLATE_TYPES if t in SELF_SERVICE_TYPES or not kinds]
    return kinds


def _prepare(out: Path) -> None:
    """Create ``out``; an older preview there is replaced, any other non-empty folder refused,
    and so is a symbolic link on the way (see :func:`_link_towards`)."""
    if (link := _link_towards(out)) is not None:
        raise UserError(
            f"{link} is a symbolic link: preview writes (and empties) only the folder --out "
            "names, never through a link; give a real folder (nothing was written)"
        )
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} exists and is not a folder")
        if (out / MARKER_FILE).is_file():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise UserError(
                f"{out} is not empty and holds no earlier preview; choose an empty "
                "or new folder (nothing was written)"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).write_text(
        "written by `reconciler preview`; replaced on every run\n", encoding="utf-8"
    )


def _link_towards(out: Path) -> Path | None:
    """``out``, or a folder on the way to it from the working folder, that is a symbolic link:
    one committed in a pull request where a pipeline writes its previews would have them
    written, and an older preview's folder emptied, wherever it points."""
    full = Path(os.path.abspath(out))
    here = Path.cwd()
    parts = full.relative_to(here).parts if full.is_relative_to(here) else ()
    base = here if out.is_absolute() else Path()
    steps = [base.joinpath(*parts[:count]) for count in range(1, len(parts) + 1)] or [out]
    return next((step for step in steps if step.is_symlink()), None)


_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]+")


def _safe(text: str) -> str:
    """A file-name-safe form of a UPN (``@`` and ``.`` kept, anything else becomes ``_``)."""
    return _UNSAFE.sub("_", text).strip(".") or "user"


def _parts(message: EmailMessage) -> tuple[str, str]:
    """``(html, text)`` bodies of a multipart/alternative message."""
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    html = html_part.get_content() if html_part is not None else ""
    text = text_part.get_content() if text_part is not None else ""
    return html, text


_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)

_STYLE = """
body { margin: 0; font-family: 'Segoe UI', Helvetica, Arial, sans-serif; color: #201f1e;
       background: #faf9f8; overflow-wrap: break-word; }
header { padding: 16px 24px; background: #a4262c; color: #fff; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; }
main { padding: 16px 24px 32px; }
.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; background: #fff; margin: 8px 0 16px; }
th, td { border: 1px solid #e1dfdd; padding: 6px 10px; text-align: left; vertical-align: top; }
th { background: #f3f2f1; }
#headers td { overflow-wrap: anywhere; }
.type { font-family: Consolas, monospace; font-weight: 600; }
.suppressed { color: #a4262c; font-weight: 600; }
.counts { margin: 4px 0 8px; }
iframe { display: block; box-sizing: border-box; width: 100%; max-width: 760px; height: 900px;
         border: 1px solid #e1dfdd; background: #fff; }
pre { box-sizing: border-box; max-width: 760px; white-space: pre-wrap; background: #fff;
      border: 1px solid #e1dfdd; padding: 12px; }
@media (max-width: 480px) {
  header, main { padding-left: 12px; padding-right: 12px; }
  th, td { padding: 4px 6px; }
}
"""

_BASE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="generator" content="audio-conferencing-reconciler preview">
<title>PREVIEW: {% block title %}{% endblock %}</title>
<style>{{ style|safe }}</style>
</head>
<body>
<header>
<h1>PREVIEW: {% block heading %}{% endblock %}</h1>
<p>{% block note %}{% endblock %}</p>
</header>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

_INDEX_BODY = """{% extends "base" %}
{% block title %}Audio Conferencing emails ({{ emails|length }}){% endblock %}
{% block heading %}Audio Conferencing emails{% endblock %}
{% block note %}Nothing was sent. {% if masked %}PINs are masked (••••••); real PINs are generated
only when the plan is applied.{% else %}No PIN is shown or generated: users get theirs at
Microsoft's self-service page (email.pin: self_service).{% endif %}{% endblock %}
{% block main %}
<p id="summary">{{ emails|length }} email(s) in {{ tenants|length }} tenant(s){% if suppressed %},
<span class="suppressed">{{ suppressed }} suppressed</span> (kept for the operator, not sent){%
endif %}.</p>
{% for tenant in tenants %}
<section id="tenant-{{ tenant.name }}">
<h2>Tenant {{ tenant.name }}</h2>
{% for warning in tenant.warnings %}<p class="suppressed">⚠ {{ warning }}</p>
{% endfor %}
{% if tenant.emails %}
<p class="counts">{{ tenant.counts }}</p>
<div class="scroll">
<table>
<thead><tr><th>User</th><th>To</th><th>Email type</th><th>Subject</th><th>Why</th>
<th>Files</th></tr></thead>
<tbody>
{% for e in tenant.emails %}
<tr class="email" data-user="{{ e.user }}" data-type="{{ e.type }}">
<td>{{ e.user }}</td>
<td>{{ e.to }}</td>
<td><span class="type">{{ e.type }}</span> in {{ e.locale }}{% if e.suppressed %}<br>
<span class="suppressed">suppressed</span>{% endif %}</td>
<td>{{ e.subject }}</td>
<td>{% for reason in e.reasons %}{{ reason }}{% if not loop.last %}<br>{% endif %}{% endfor
%}</td>
<td><a href="{{ e.page }}">view</a> · <a href="{{ e.eml }}" download>.eml</a></td>
</tr>
{% endfor %}
</tbody>
</table>
</div>
{% else %}
<p>No email would be sent.</p>
{% endif %}
</section>
{% else %}
<p>No tenant in this plan.</p>
{% endfor %}
<section id="locales">
<h2>Every email in every language</h2>
<p>Sample values, PIN masked (absent in PIN self-service mode): how each type reads in each
locale of the templates, whether or not this plan sends it.</p>
<div class="scroll">
<table>
<thead><tr><th>Locale</th>{% for type in types %}<th>{{ type }}</th>{% endfor %}</tr></thead>
<tbody>
{% for locale, pages in samples %}
<tr class="locale" data-locale="{{ locale }}"><th>{{ locale }}</th>
{% for sample in pages %}<td><a href="{{ sample.page }}" title="{{ sample.subject }}">view</a></td>
{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
</div>
</section>
{% endblock %}
"""

_PAGE_BODY = """{% extends "base" %}
{% block title %}{{ e.type }} email to {{ e.user }}{% endblock %}
{% block heading %}{{ e.type }} email to {{ e.user }}{% endblock %}
{% block note %}Not sent. The PIN is masked; the real one is generated when the plan is
applied.{% endblock %}
{% block main %}
<p><a href="../index.html">← all previews</a> · <a href="{{ eml_name }}" download>download
.eml</a></p>
<div class="scroll">
<table id="headers">
<tr><th>Tenant</th><td>{{ e.tenant }}</td></tr>
<tr><th>User</th><td>{{ e.user }}</td></tr>
<tr><th>Email type</th><td><span class="type">{{ e.type }}</span>{% if e.suppressed %}
<span class="suppressed">suppressed: kept for the operator, not sent</span>{% endif %}</td></tr>
<tr><th>Why</th><td>{{ e.reasons|join("; ") }}</td></tr>
{% for name, value in headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>
</div>
{% include "bodies" %}
{% endblock %}
"""

_BODIES = """<h2>HTML body</h2>
<iframe title="HTML body of the email" sandbox srcdoc="{{ html }}"></iframe>
<h2>Plain-text body</h2>
<pre>{{ text }}</pre>
"""

_SAMPLE_BODY = """{% extends "base" %}
{% block title %}{{ s.type }} email in {{ s.locale }}, sample values{% endblock %}
{% block heading %}{{ s.type }} email in {{ s.locale }}, sample values{% endblock %}
{% block note %}Not a planned email: how this type reads in this language, with made-up values
and the PIN masked.{% endblock %}
{% block main %}
<p><a href="../../index.html">← all previews</a></p>
<div class="scroll">
<table id="headers">
<tr><th>Subject</th><td>{{ s.subject }}</td></tr>
<tr><th>Locale</th><td>{{ s.locale }}</td></tr>
<tr><th>Email type</th><td><span class="type">{{ s.type }}</span></td></tr>
</table>
</div>
{% include "bodies" %}
{% endblock %}
"""

_ENV = Environment(
    autoescape=True,
    keep_trailing_newline=True,
    loader=DictLoader(
        {
            "base": _BASE,
            "index": _INDEX_BODY,
            "page": _PAGE_BODY,
            "bodies": _BODIES,
            "sample": _SAMPLE_BODY,
        }
    ),
)
_INDEX = _ENV.get_template("index")
_PAGE = _ENV.get_template("page")
_SAMPLE = _ENV.get_template("sample")

_SHOWN_HEADERS = (
    "From",
    "To",
    "Subject",
    "Message-ID",
    "Content-Language",
    "X-Reconciler-Tenant",
    "X-Reconciler-Email-Type",
)


def _email_page(entry: PreviewEmail, message: EmailMessage) -> str:
    html, text = _parts(message)
    headers = [(name, str(message[name])) for name in _SHOWN_HEADERS if message[name] is not None]
    return _PAGE.render(
        e=entry,
        headers=headers,
        html=html,
        text=text,
        csp=_CSP,
        style=_STYLE,
        eml_name=Path(entry.eml).name,
    )


def _index_page(plan: Plan, emails: list[PreviewEmail], samples: list[SamplePage]) -> str:
    tenants = []
    for tenant_plan in plan.tenants:
        mine = [e for e in emails if e.tenant == tenant_plan.name]
        counts = Counter(e.type for e in mine)
        tenants.append(
            {
                "name": tenant_plan.name,
                "warnings": tenant_plan.warnings,
                "emails": mine,
                "counts": ", ".join(f"{counts[t]} {t}" for t in EMAIL_TYPES if counts[t]),
            }
        )
    by_locale: dict[str, list[SamplePage]] = {}
    for sample in samples:
        by_locale.setdefault(sample.locale, []).append(sample)
    return _INDEX.render(
        tenants=tenants,
        emails=emails,
        csp=_CSP,
        style=_STYLE,
        suppressed=sum(e.suppressed for e in emails),
        types=[s.label for s in next(iter(by_locale.values()), [])],  # each locale's columns
        samples=list(by_locale.items()),
        masked=any(not s.self_service for s in samples),
    )
