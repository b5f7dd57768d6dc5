"""``reconciler preview``: every planned email rendered, PIN masked, nothing sent or recorded."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reconciler.emails import PIN_TYPES, TEMPLATE_TYPES
from reconciler.locales import SHIPPED_LOCALES
from tests.helpers.workspace import Workspace

MASK = "••••••"  # the example tenant's pin_length is 6
FIRST_RUN = ["alice@contoso.com", "bob@contoso.com", "chloe@contoso.com", "dan@contoso.com"]


@pytest.fixture
def ws(example_workspace: Workspace) -> Workspace:
    return example_workspace


def run(ws: Workspace, *args: str, code: int = 0) -> str:
    """``reconciler ARGS`` typed in the workspace (the example configuration, as the working
    directory: the packaged templates are used and nothing lands in the checkout)."""
    result = ws.cli(*args)
    assert result.code == code, str(result)
    return result.output


def messages(out: Path) -> list[tuple[Path, EmailMessage]]:
    found = []
    for path in sorted(out.glob("*/*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append((path, message))
    return found


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


class Rows(HTMLParser):
    """The ``data-user``/``data-type`` rows of index.html, and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and "data-user" in values:
            self.rows.append((str(values["data-user"]), str(values["data-type"])))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag == "script":
            self.scripts += 1


def index_rows(out: Path) -> Rows:
    parser = Rows()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    return parser


def set_user(work: Path, file: str, upn: str, key: str, value: Any) -> None:
    """Edit one user's key in place (keeps the example's formatting elsewhere)."""
    path = work / "tenants" / "contoso" / "users" / file
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"  {upn}:")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"  \S", lines[i])), len(lines))
    block = [line for line in lines[start + 1 : end] if not line.startswith(f"    {key}:")]
    rest = [line for line in block if line.strip()]
    new = [f"  {upn}:", *rest]
    if value is not None:
        new.append(f"    {key}: {json.dumps(value, ensure_ascii=False)}")
    lines[start:end] = [*new, ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_first_run_previews_every_planned_email(ws: Workspace) -> None:
    output = run(ws, "preview", "--out", "previews")
    out = ws.root / "previews"
    assert "4 email preview(s) written; open previews/index.html" in output
    found = messages(out)
    assert [p.name for p, _ in found] == [
        f"{n:04d}-{u}-enabled.eml" for n, u in enumerate(FIRST_RUN, start=1)
    ]
    plan = json.loads(run(ws, "plan", "--format", "json"))
    planned = [(e["user"], e["type"]) for t in plan["tenants"] for e in t["emails"]]
    # the index lists exactly the plan's emails, in send order
    assert index_rows(out).rows == planned == [(u, "enabled") for u in FIRST_RUN]
    for path, message in found:
        assert message["X-Reconciler-Tenant"] == "contoso"
        assert message["X-Reconciler-Email-Type"] == "enabled"
        assert message["Subject"].startswith(("[PREVIEW] ", "[APERÇU] "))
        text, html = bodies(message)
        assert MASK in text and MASK in html
        page = path.with_suffix(".html").read_text(encoding="utf-8")
        assert "PREVIEW" in page and "enabled" in page
        # the page carries the email's own HTML body, escaped into the sandboxed frame
        assert '<iframe title="HTML body of the email" sandbox srcdoc="' in page
    chloe = dict((str(m["To"]), m) for _, m in found)["Chloé Dubois <chloe@contoso.com>"]
    assert chloe["Content-Language"] == "fr" and "APERÇU" in bodies(chloe)[1]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "new user with Audio Conferencing" in index  # the plan's reason
    assert index.count("PREVIEW") >= 2
    for link in index_rows(out).links:  # every link resolves inside the preview folder
        assert (out / link).is_file(), link


def test_no_pin_is_ever_generated(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pins(*_: object, **__: object) -> str:
        raise AssertionError("preview generated a PIN")

    monkeypatch.setattr("reconciler.emails.plan_messages.generate_pin", no_pins)
    monkeypatch.setattr("reconciler.emails.generate_pin", no_pins)
    run(ws, "preview", "--out", "previews")
    for path, message in messages(ws.root / "previews"):
        text, html = bodies(message)
        # the PIN line shows the mask and no digit
        pin_line = next(line for line in text.splitlines() if "PIN" in line and MASK in line)
        assert not re.search(r"\d", pin_line)
        assert MASK in html
        page = path.with_suffix(".html").read_text(encoding="utf-8")
        assert MASK in page


def test_preview_writes_no_state_and_sends_nothing(ws: Workspace) -> None:
    state = ws.root / ".reconciler" / "state.db"
    run(ws, "preview", "--out", "previews")
    assert not (ws.root / ".reconciler").exists()  # no state created, no Maildir, no lock

    run(ws, "apply", "--auto-approve")
    mail = ws.root / ".reconciler" / "mail" / "new"
    sent = sorted(p.name for p in mail.iterdir())
    assert len(sent) == 4
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    files_before = sorted(p.name for p in (ws.root / ".reconciler").iterdir())

    set_user(ws.root, "engineering.yaml", "alice@contoso.com", "conference_id", "8412346")
    set_user(ws.root, "engineering.yaml", "bob@contoso.com", "pin_reset", "2026-11-29 #1")
    set_user(ws.root, "sales.yaml", "dan@contoso.com", "license", False)
    set_user(ws.root, "paris.yaml", "chloe@contoso.com", "send_conference_info", "2026-11-29")
    run(ws, "preview", "--out", "previews")

    found = messages(ws.root / "previews")
    assert [
        (str(m["X-Reconciler-Email-Type"]), m["To"].addresses[0].addr_spec) for _, m in found
    ] == [
        ("details-changed", "alice@contoso.com"),
        ("pin-reset", "bob.kelly@contoso.com"),
        ("conference-info", "chloe@contoso.com"),
        ("disabled", "dan@contoso.com"),
    ]
    by_type = {str(m["X-Reconciler-Email-Type"]): bodies(m) for _, m in found}
    assert MASK in by_type["pin-reset"][0]
    for kind in ("details-changed", "conference-info", "disabled"):
        assert "•" not in by_type[kind][0] and "•" not in by_type[kind][1]
    assert "8412346" in by_type["details-changed"][0]
    # the state is byte for byte what apply left, nothing more was sent or queued
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (ws.root / ".reconciler").iterdir()) == files_before
    assert sorted(p.name for p in mail.iterdir()) == sent
    assert json.loads(run(ws, "state", "show"))["tenants"][0]["serial"] == 1
    # a preview's Message-ID is never the one apply will give the real email
    real = json.loads(run(ws, "plan", "--format", "json"))
    assert real["summary"]["emails"] == 4
    ids = {str(m["Message-ID"]) for _, m in found}
    run(ws, "apply", "--auto-approve")
    delivered = [
        BytesParser(policy=policy.default).parsebytes(p.read_bytes())
        for p in mail.iterdir()
        if p.name not in sent
    ]
    assert len(delivered) == 4
    assert ids.isdisjoint(str(m["Message-ID"]) for m in delivered)


def test_pages_escape_configuration_values(ws: Workspace) -> None:
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    set_user(ws.root, "sales.yaml", "dan@contoso.com", "display_name", hostile)
    run(ws, "preview", "--out", "previews")
    out = ws.root / "previews"
    page = (out / "contoso" / "0004-dan@contoso.com-enabled.html").read_text(encoding="utf-8")
    assert hostile not in page and "<script>" not in page and "<img" not in page
    assert "&lt;img src=x" in page  # shown as text, in the To header row
    assert index_rows(out).scripts == 0
    assert "default-src &#39;none&#39;" in page  # restrictive CSP on every page


def test_suppressed_tenant_is_previewed_and_flagged(ws: Workspace) -> None:
    tenant = ws.root / "tenants" / "contoso" / "tenant.yaml"
    text = tenant.read_text(encoding="utf-8")
    tenant.write_text(
        text.replace(
            "automatically_send_emails_to_users: true", "automatically_send_emails_to_users: false"
        ),
        encoding="utf-8",
    )
    run(ws, "preview", "--out", "previews")
    index = (ws.root / "previews" / "index.html").read_text(encoding="utf-8")
    assert "4 suppressed" in index and "automatically_send_emails_to_users is false" in index
    assert len(messages(ws.root / "previews")) == 4


@pytest.mark.parametrize(
    ("mail", "sender"),
    [
        # nothing is sent, so SMTP's required --default-from is not demanded
        ("smtp://relay.contoso.com", "Office 365 <noreply@localhost>"),
        # the mailbox Graph sends as, the From apply will use
        ("graph://conferencing@contoso.com", "Office 365 <conferencing@contoso.com>"),
    ],
)
def test_preview_shows_the_default_sender(ws: Workspace, mail: str, sender: str) -> None:
    """The same default From as apply (one implementation), without demanding what only
    sending needs."""
    tenant = ws.root / "tenants" / "contoso" / "tenant.yaml"
    text = tenant.read_text(encoding="utf-8")
    tenant.write_text(
        text.replace("send_email_from_override: true", "send_email_from_override: false"),
        encoding="utf-8",
    )
    run(ws, "preview", "--out", "previews", "--mail", mail)
    assert {str(m["From"]) for _, m in messages(ws.root / "previews")} == {sender}


def test_nothing_to_send(ws: Workspace) -> None:
    run(ws, "apply", "--auto-approve")
    output = run(ws, "preview", "--out", "previews", "--quiet")
    assert output == ""
    index = (ws.root / "previews" / "index.html").read_text(encoding="utf-8")
    assert "No email would be sent." in index
    assert messages(ws.root / "previews") == []


def test_output_folder_rules(ws: Workspace) -> None:
    run(ws, "preview", "--out", "previews")
    stale = ws.root / "previews" / "contoso" / "9999-old@contoso.com-enabled.eml"
    stale.write_text("stale", encoding="utf-8")
    run(ws, "preview", "--out", "previews")  # an earlier preview is replaced whole
    assert not stale.exists() and len(messages(ws.root / "previews")) == 4

    (ws.root / "notes").mkdir()
    (ws.root / "notes" / "keep.txt").write_text("mine", encoding="utf-8")
    output = run(ws, "preview", "--out", "notes", code=1)
    assert "not empty" in output
    assert sorted(p.name for p in (ws.root / "notes").iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("out", "link"),
    [
        ("previews", "previews"),
        ("previews/sub", "previews"),
        ("{root}/previews", "{root}/previews"),
    ],
    ids=["the-folder", "a-folder-on-the-way", "absolute"],
)
@pytest.mark.parametrize("target", ["earlier-preview", "empty", "missing"])
def test_an_output_folder_through_a_symbolic_link_is_refused_and_nothing_written(
    ws: Workspace, out: str, link: str, target: str
) -> None:
    """A pull request can commit ``previews`` as a link where the pipeline writes previews."""
    elsewhere = ws.root / "elsewhere"
    if target == "earlier-preview":
        run(ws, "preview", "--out", "elsewhere")
    elif target == "empty":
        elsewhere.mkdir()
    (ws.root / "previews").symlink_to(elsewhere)
    before = {p: p.read_bytes() for p in ws.root.rglob("*") if p.is_file()}
    result = ws.cli("preview", "--out", out.format(root=ws.root))
    assert result.code == 1 and "Traceback" not in result.output, str(result)
    assert result.stderr.splitlines() == [
        f"error: {link.format(root=ws.root)} is a symbolic link: preview writes (and empties) "
        "only the folder --out names, never through a link; give a real folder (nothing was "
        "written)"
    ]
    assert {p: p.read_bytes() for p in ws.root.rglob("*") if p.is_file()} == before
    assert elsewhere.exists() == (target != "missing")


def test_tenant_filter_and_config_errors(ws: Workspace) -> None:
    shutil.copytree(ws.root / "tenants" / "contoso", ws.root / "tenants" / "fabrikam")
    run(ws, "preview", "--out", "previews", "--tenant", "fabrikam")
    assert {p.parent.name for p, _ in messages(ws.root / "previews")} == {"fabrikam"}

    set_user(ws.root, "sales.yaml", "dan@contoso.com", "conference_id", "12")
    output = run(ws, "preview", "--out", "again", code=1)
    assert "sales.yaml:" in output and "nothing was planned" in output
    assert not (ws.root / "again").exists()


def test_every_email_type_in_every_locale_is_previewed(ws: Workspace) -> None:
    """The plan only reaches en and fr users; the preview still shows all ten languages."""
    run(ws, "preview", "--out", "previews")
    out = ws.root / "previews"
    index = (out / "index.html").read_text(encoding="utf-8")
    for locale in SHIPPED_LOCALES:
        assert f'data-locale="{locale}"' in index
        for email_type in TEMPLATE_TYPES:
            link = f"_locales/{locale}/{email_type}.html"
            assert f'href="{link}"' in index
            page = (out / link).read_text(encoding="utf-8")
            assert "default-src &#39;none&#39;" in page and "sample values" in page
            if email_type in PIN_TYPES:
                assert page.count(MASK) >= 2, "masked in the HTML and in the text body"
            assert not re.search(r"(?<![\d+-])48151(?!\d)", page), "no sample PIN digits"
    german = (out / "_locales" / "de" / "enabled.html").read_text(encoding="utf-8")
    assert "Audiokonferenzen sind jetzt für Sie eingerichtet" in german
    assert not list((out / "_locales").rglob("*.eml")), "samples are pages, not messages"
    assert '<span class="type">enabled</span> in fr' in index, "each email names its locale"
