"""Maildir delivery and the suppressed-message files: standard layout, private, crash-safe."""

from __future__ import annotations

import email
import mailbox
import stat
from email import policy
from pathlib import Path

import pytest

from reconciler.delivery import (
    ConnectionFailure,
    DeliveryReport,
    MaildirTransport,
    Pace,
    SuppressedFiles,
    deliver,
    open_transport,
)
from tests.fixtures.outbox import Outgoing, outgoing


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(transport, messages, **kwargs) -> tuple[DeliveryReport, list[str]]:
    """deliver() with recording callbacks: its report, and the ids delivered in order."""
    delivered: list[str] = []
    failed: list[str] = []
    report = deliver(
        messages,
        transport,
        on_delivered=lambda m: delivered.append(m.message_id),
        on_failed=lambda m, reason: failed.append(m.message_id),
        sleep=lambda seconds: None,
        **kwargs,
    )
    assert report.delivered == len(delivered)
    assert list(report.failed) == failed
    return report, delivered


# --- Maildir ---------------------------------------------------------------------------------


def test_maildir_messages_are_the_sent_bytes_with_local_line_endings(tmp_path: Path) -> None:
    """LF, as Maildir readers expect (classic mutt shows a CRLF file's \\r as ^M after every
    header), and otherwise byte for byte what SMTP sends with CRLF."""
    messages = [outgoing(n) for n in range(3)]
    with open_transport(f"maildir:{tmp_path / 'mail'}") as transport:
        _, delivered = run(transport, messages)

    assert delivered == [m.message_id for m in messages]
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    stored = sorted(box.get_bytes(key) for key in box.iterkeys())
    assert all(b"\r" not in data for data in stored)
    assert stored == sorted(m.data.replace(b"\r\n", b"\n") for m in messages)
    assert {message["Message-ID"] for message in box} == {m.message_id for m in messages}


def test_maildir_is_private_and_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    with MaildirTransport(root) as transport:
        run(transport, [outgoing(1), outgoing(2)])

    for folder in (root, root / "tmp", root / "new", root / "cur"):
        assert mode(folder) == 0o700, folder
    files = list((root / "new").iterdir())
    assert len(files) == 2
    assert all(mode(file) == 0o600 for file in files)
    assert list((root / "tmp").iterdir()) == []


def test_maildir_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_transport("maildir:.reconciler/mail") as transport:
        run(transport, [outgoing(1)])
    assert len(mailbox.Maildir(tmp_path / ".reconciler" / "mail", create=False)) == 1


def test_unwritable_maildir_is_a_connection_failure_and_stops_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way")
    transport = MaildirTransport(blocker)
    with pytest.raises(ConnectionFailure, match="not-a-folder"):
        transport.send(outgoing(0))

    messages = [outgoing(n) for n in range(3)]
    report, _ = run(transport, messages, backoff=0.0)
    assert report.queued == [messages[0].message_id]  # the rest: not even read
    assert report.stopped is not None and "maildir:" in report.stopped
    assert "maildir:" in report.queued_reasons[messages[0].message_id]


# --- Suppressed messages -----------------------------------------------------------------------


def test_suppressed_files_are_private_eml_files_at_path_for(tmp_path: Path) -> None:
    directory = tmp_path / "suppressed" / "contoso"
    messages = [outgoing(1), outgoing(2)]
    with SuppressedFiles(directory) as transport:
        run(transport, messages)
        paths = [transport.path_for(m) for m in messages]

    assert paths == [directory / "m1@reconciler.test.eml", directory / "m2@reconciler.test.eml"]
    assert mode(directory) == 0o700
    for path, message in zip(paths, messages, strict=True):
        assert mode(path) == 0o600
        assert path.read_bytes() == message.data
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert parsed["Message-ID"] == message.message_id


def test_suppressed_files_are_idempotent_per_message_id(tmp_path: Path) -> None:
    transport = SuppressedFiles(tmp_path)
    message = outgoing(1)
    run(transport, [message])
    run(transport, [message])  # a re-run after a crash between writing and recording
    assert [p.name for p in tmp_path.iterdir()] == [transport.path_for(message).name]


@pytest.mark.parametrize(
    "message_id",
    ["<../../etc/passwd>", "<a/b@x>", "<.hidden@x>", "<with space@x>", "<" + "x" * 500 + ">"],
    ids=["dot-dot", "slash", "hidden", "space", "long"],
)
def test_suppressed_file_names_stay_inside_the_directory(tmp_path: Path, message_id: str) -> None:
    transport = SuppressedFiles(tmp_path / "out")
    message = outgoing(1, message_id)
    run(transport, [message])
    path = transport.path_for(message)
    assert path.parent == tmp_path / "out"
    assert not path.name.startswith(".")
    assert len(path.name) < 200
    assert path.read_bytes() == message.data


def test_suppressed_file_names_never_collide(tmp_path: Path) -> None:
    transport = SuppressedFiles(tmp_path)
    first, second = outgoing(1, "<a/b@x>"), outgoing(2, "<a_b@x>")
    assert transport.path_for(first) != transport.path_for(second)


def test_suppressed_message_without_id_is_named_by_content(tmp_path: Path) -> None:
    transport = SuppressedFiles(tmp_path)
    message = Outgoing("", "noreply@contoso.com", ["a@contoso.com"], b"Subject: x\r\n\r\nbody\r\n")
    run(transport, [message])
    run(transport, [message])
    assert [p.name for p in tmp_path.iterdir()] == [transport.path_for(message).name]


def test_a_message_delivered_twice_into_a_maildir_is_there_once(tmp_path: Path) -> None:
    """Even after a reader moved it to cur/ with its flags, and from another transport (a re-run
    after a crash): what lets apply record Maildir deliveries a batch at a time."""
    first, second = outgoing(1), outgoing(2)
    run(MaildirTransport(tmp_path), [first, second])
    box = mailbox.Maildir(tmp_path, factory=None, create=False)
    key = next(iter(box.iterkeys()))
    seen = box.get_message(key)
    seen.set_subdir("cur")
    seen.add_flag("S")
    box[key] = seen  # moved to cur/ as a mail client does
    _, delivered = run(MaildirTransport(tmp_path), [first, second, outgoing(3)])
    assert delivered == [first.message_id, second.message_id, outgoing(3).message_id]
    ids = sorted(email.message_from_bytes(box.get_bytes(k))["Message-ID"] for k in box.iterkeys())
    assert ids == sorted(m.message_id for m in (first, second, outgoing(3)))


def test_a_wave_takes_only_its_own_messages_from_the_queue(tmp_path: Path) -> None:
    """--max-messages 10 out of a queue of 1,000 reads 11 messages from the outbox (the 11th
    meets the limit), not 1,000: an hourly wave of a 300,000-user rollout stays cheap."""
    taken: list[int] = []

    def queue():
        for n in range(1000):
            taken.append(n)
            yield outgoing(n)

    report, delivered = run(MaildirTransport(tmp_path), queue(), pace=Pace(remaining=10))
    assert (report.delivered, len(delivered), len(taken)) == (10, 10, 11)
    assert report.stopped == report.limited == "the apply's --max-messages is reached"
    assert report.queued == [] and report.failed == {}
