"""What was delivered, read back with the standard library: messages from a Maildir or an SMTP
server parsed once each (:class:`Mail`), the PINs in them, their order and their copies."""

from __future__ import annotations

import email
import functools
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from html.parser import HTMLParser
from pathlib import Path
from typing import cast

# "PIN: 12345", "New PIN: 12345", "Code confidentiel (PIN) : 12345" (French puts a no-break
# space before the colon).
_PIN_LINE = re.compile(r"PIN\)?[ \u00a0\u202f]*:[ \u00a0\u202f]*(\d+)[ \t\r]*$", re.MULTILINE)


@dataclass(eq=False)
class Mail:
    """A delivered message, parsed with the standard library (``email.policy.default``); what
    is read from it is computed once, and its headers alone (a test of thousands of messages
    often reads nothing else) without parsing its body."""

    raw: bytes
    path: Path | None = None

    @functools.cached_property
    def message(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @functools.cached_property
    def headers(self) -> EmailMessage:
        if "message" in self.__dict__:
            return self.message
        return cast(EmailMessage, BytesHeaderParser(policy=policy.default).parsebytes(self.raw))

    @functools.cached_property
    def type(self) -> str:
        return str(self.headers["X-Reconciler-Email-Type"])

    @functools.cached_property
    def tenant(self) -> str:
        return str(self.headers["X-Reconciler-Tenant"])

    @functools.cached_property
    def message_id(self) -> str:
        return str(self.headers["Message-ID"])

    @functools.cached_property
    def to(self) -> str:
        """The ``To`` address (lower-case), without display name."""
        addresses = self.headers["To"].addresses
        assert len(addresses) == 1, self.headers["To"]
        return addresses[0].addr_spec.lower()

    @functools.cached_property
    def sender(self) -> tuple[str, str]:
        """``(display name, address)`` of ``From``."""
        addresses = self.headers["From"].addresses
        assert len(addresses) == 1, self.headers["From"]
        return addresses[0].display_name, addresses[0].addr_spec

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None and body.get_content_subtype() == subtype, self.message
        return str(body.get_content()).replace("\r\n", "\n")

    @functools.cached_property
    def text(self) -> str:
        return self.part("plain")

    @functools.cached_property
    def html(self) -> str:
        return self.part("html")

    @functools.cached_property
    def pins(self) -> list[str]:
        """Every PIN line of the plain-text body."""
        return _PIN_LINE.findall(self.text)

    def contains(self, needle: str) -> bool:
        """``needle`` in the decoded text or HTML body (spaces and dashes of phone numbers as
        the templates format them are ignored)."""
        return any(_SQUEEZE.sub("", needle) in body for body in self._squeezed)

    @functools.cached_property
    def _squeezed(self) -> tuple[str, str]:
        return _SQUEEZE.sub("", self.text), _SQUEEZE.sub("", self.html)


class _VisibleText(HTMLParser):
    _HIDDEN = frozenset({"head", "title", "style", "script"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in self._HIDDEN

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in self._HIDDEN

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.chunks.append(data)


def visible_text(html: str) -> str:
    """The text a reader sees in an HTML body: tags dropped (a phone number split into one
    ``<span>`` per digit group reads whole again), entities decoded, ``<head>`` left out."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return "".join(parser.chunks)


def parse_mail(raw: bytes, path: Path | None = None) -> Mail:
    return Mail(raw, path)


_SQUEEZE = re.compile(r"[ \-\u00a0\u202f]")
_parsed: dict[Path, Mail] = {}
_MAILDIR_NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.")


def read_maildir(path: Path) -> list[Mail]:
    """Every message in the Maildir (read with :class:`mailbox.Maildir`), in delivery order
    (the conventional ``time.MmicrosecondsPpidQcounter`` file names order them)."""
    import mailbox

    if not path.exists():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    found = []
    for key in box.iterkeys():
        match = _MAILDIR_NAME.match(key)
        assert match, f"unconventional Maildir file name {key!r}"
        order = (int(match[1]), int(match[2]), int(match[3]), int(match[4]))
        file = path / ("new" if (path / "new" / key).exists() else "cur") / key
        if file not in _parsed:  # a delivered message file never changes
            _parsed[file] = parse_mail(box.get_bytes(key), file)
        found.append((order, _parsed[file]))
    return [mail for _, mail in sorted(found, key=lambda pair: pair[0])]


def is_trivial_pin(pin: str) -> bool:
    """All one digit, or a straight ascending/descending run (judged independently of the code
    under test)."""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    return len(set(pin)) == 1 or steps in ({1}, {-1})


def sequence(mails: Sequence[Mail]) -> list[tuple[str, str]]:
    """``(recipient, type)`` of each message, in order."""
    return [(m.to, m.type) for m in mails]


def copies_by_message_id(mails: Sequence[Mail]) -> Counter[str]:
    """How many times each Message-ID arrived: every value 1 means nothing was sent twice."""
    return Counter(m.message_id for m in mails)
