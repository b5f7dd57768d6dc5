"""Measure the reconciler against the floor of its work, in one run, and print the ratios.

    python benchmarks/run.py [--users 100000] [--files 20] [--apply-users 10000] [--apply-all]
                             [--out DIR]

Every figure is a separate process measured with ``os.wait4`` (wall time and peak RSS), so the
reconciler and its baseline are timed the same way on the same machine, minutes apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import changed_in_one_file, changed_users, write_export, write_tenant

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]

# The floor: parse every file with libyaml's CSafeLoader and keep the documents (any program
# that plans from them must hold them).
BARE_LOAD = r"""
import sys, yaml
documents = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        documents.append(yaml.load(f, Loader=yaml.CSafeLoader))
"""

BARE_COMPOSE = r"""
import sys, os, mailbox
from email.message import EmailMessage
from email.headerregistry import Address
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
box = mailbox.Maildir(sys.argv[1], create=True)
for i in range(int(sys.argv[2])):
    m = EmailMessage()
    m['From'] = Address('Office 365', addr_spec='noreply@localhost')
    m['To'] = Address(f'User {i}', addr_spec=f'user{i:06d}@contoso.com')
    m['Subject'] = 'Audio Conferencing is now set up for you'
    m['Date'] = format_datetime(datetime.now(timezone.utc))
    m['Message-ID'] = make_msgid(domain='reconciler.invalid')
    m.set_content(f'Hello User {i},\nConference ID: {1000000 + i}\n'
                  'Dial-in: +1 425-555-0100\n' * 12)
    m.add_alternative(f'<p>Hello User {i},</p><p>Conference ID: {1000000 + i}</p>\n' * 12,
                      subtype='html')
    box.add(m.as_bytes())
"""

BARE_SMTP = r"""
import sys, smtplib
from email import policy
from email.message import EmailMessage
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with smtplib.SMTP(host, port, timeout=30) as s:
    for i in range(n):
        m = EmailMessage()
        m['From'] = 'noreply@localhost'
        m['To'] = f'user{i:06d}@contoso.com'
        m['Subject'] = 'Audio Conferencing'
        m.set_content('Conference ID: 1234567\n' * 40)
        m.add_alternative('<p>Conference ID: 1234567</p>\n' * 40, subtype='html')
        to = f'user{i:06d}@contoso.com'
        s.sendmail('noreply@localhost', [to], m.as_bytes(policy=policy.SMTP))
"""

SMTP_SINK = r"""
import sys, time
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return '250 OK'
c = Controller(Sink(), hostname='127.0.0.1', port=int(sys.argv[1]))
c.start()
print('ready', flush=True)
sys.stdin.read()
c.stop()
"""


@dataclass
class Run:
    seconds: float
    peak_mb: float


def measure(
    argv: list[str], cwd: Path | None = None, env: dict | None = None, ok: tuple[int, ...] = (0,)
) -> Run:
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty run must not block
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in ok:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} exited {code}:\n{err.read().decode()}")
    return Run(seconds, usage.ru_maxrss / 1024)


class WriteLockProbe:
    """Another process's view of an SQLite state's write lock: every 50 ms it tries to take it
    (and lets it go at once); ``longest`` is the longest time it could not, the longest any
    other apply on the same state would wait."""

    def __init__(self, path: Path):
        self.path, self.longest = path, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> WriteLockProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        blocked_since: float | None = None
        while not self._stop.wait(0.05):
            if not self.path.exists():
                continue
            db = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
                blocked_since = None
            except sqlite3.OperationalError:
                blocked_since = blocked_since or time.perf_counter()
                self.longest = max(self.longest, time.perf_counter() - blocked_since)
            finally:
                db.close()


def median_of(times: int, run: Callable[[], Run]) -> Run:
    """The run of median time among ``times``: for commands that take under a second."""
    return sorted((run() for _ in range(times)), key=lambda r: r.seconds)[times // 2]


def reconciler(*args: str) -> list[str]:
    return [PY, "-m", "reconciler", *args]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--apply-users", type=int, default=10_000)
    parser.add_argument("--out", type=Path, help="keep the generated data here")
    parser.add_argument(
        "--apply-all",
        action="store_true",
        help="also apply every user for the first time, into a Maildir (peak memory; slow: "
        "about 35 minutes at 300,000 users on 2 cores)",
    )
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, Run, Run, float, float]] = []

    def compare(label: str, run: Run, base: Run, target: float, mem_target: float = 0) -> None:
        rows.append((label, run, base, target, mem_target))
        print(
            f"  {label}: {run.seconds:.2f}s / {base.seconds:.2f}s = "
            f"{run.seconds / base.seconds:.2f}x time, {run.peak_mb:.0f}/{base.peak_mb:.0f} MB = "
            f"{run.peak_mb / base.peak_mb:.2f}x memory",
            flush=True,
        )

    example = work / "example"
    shutil.copytree(ROOT / "tenants", example / "tenants", dirs_exist_ok=True)
    measure(reconciler("apply", "--auto-approve"), cwd=example)

    def in_example(*argv: str) -> Run:
        return median_of(5, lambda: measure(reconciler(*argv), cwd=example))

    compare(
        "apply (no change) vs plan (no change), example tenant",
        in_example("apply", "--auto-approve"),
        in_example("plan"),
        1.5,
    )

    print(f"Generating {args.users} users over {args.files} files in {work} ...", flush=True)
    before, after, one_file = work / "before", work / "after", work / "one-file"
    write_tenant(before, args.users, args.files, set())
    write_tenant(after, args.users, args.files, changed_users(args.users, args.change))
    write_tenant(
        one_file, args.users, args.files, changed_in_one_file(args.users, args.files, args.change)
    )
    files = sorted(str(p) for p in (after / "big").rglob("*.yaml"))
    state = work / "state.db"
    common = ["--state", str(state)]
    mail = ["--mail", f"maildir:{work / 'mail'}"]

    base = measure([PY, "-c", BARE_LOAD, *files])
    print(f"Bare CSafeLoader load: {base.seconds:.2f}s, {base.peak_mb:.0f} MB", flush=True)
    compare("validate", measure(reconciler("validate", "--config", str(after))), base, 1.3, 1.5)
    state.unlink(missing_ok=True)
    compare(
        f"first plan --out ({args.users} users, no state)",
        measure(reconciler("plan", "--config", str(after), *common, "--out", str(work / "p1"))),
        base,
        1.3,
        1.5,
    )
    compare(
        "import", measure(reconciler("import", "--config", str(before), *common)), base, 1.3, 1.5
    )
    planned = measure(reconciler("plan", "--config", str(after), *common, "--format", "json"))
    compare("plan (1% changed)", planned, base, 1.3, 1.5)
    export = write_export(work / "users.csv", args.users)
    drift = ["drift", "--config", str(after), *common, "--tenant", "big", "--from", str(export)]
    compare(
        "drift (live export of every enabled user, 1% changed in git) vs that plan",
        measure(reconciler(*drift, "--format", "json"), ok=(0, 2)),
        planned,
        1.5,
        1.5,
    )
    compare(
        "plan (no change)",
        measure(reconciler("plan", "--config", str(before), *common)),
        base,
        0.05,
    )
    compare(
        f"plan (one file of {args.files} changed, {args.change:.0%} of its users)",
        measure(reconciler("plan", "--config", str(one_file), *common)),
        base,
        0.08,
    )
    # fmt lays out and re-reads every file (exit 1: the generated files are not canonical).
    compare(
        "fmt --check",
        measure(reconciler("fmt", "--check", "--config", str(before)), ok=(0, 1)),
        base,
        3.0,
        2.0,
    )

    n = args.apply_users
    small = work / "apply"
    write_tenant(small, n, 10, set(), enabled_fraction=1.0)
    base_mail = measure([PY, "-c", BARE_COMPOSE, str(work / "bare-mail"), str(n)])

    def first_apply(config: Path) -> Run:
        """Apply ``config`` into an empty state and Maildir; print the longest time the
        state's write lock was held (another apply waits that long at most)."""
        state.unlink(missing_ok=True)
        shutil.rmtree(work / "mail", ignore_errors=True)
        with WriteLockProbe(state) as probe:
            run = measure(
                reconciler(
                    "apply",
                    "--auto-approve",
                    "--allow-new-state",
                    "--config",
                    str(config),
                    *common,
                    *mail,
                )
            )
        print(f"  longest write transaction: {probe.longest:.2f}s", flush=True)
        return run

    compare(
        f"first apply, {n} users, Maildir",
        first_apply(small),
        base_mail,
        1.5,
    )

    port = free_port()
    sink = subprocess.Popen(
        [PY, "-c", SMTP_SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        base_smtp = measure([PY, "-c", BARE_SMTP, "127.0.0.1", str(port), str(n)])
        # Queue everything against a dead port, then time the apply that only delivers.
        state.unlink(missing_ok=True)
        smtp_args = [
            "--config",
            str(small),
            "--state",
            str(state),
            "--default-from",
            "noreply@contoso.com",
            "--allow-new-state",
        ]
        measure(
            reconciler(
                "apply",
                "--auto-approve",
                "--retry-backoff",
                "0",
                *smtp_args,
                "--mail",
                f"smtp://127.0.0.1:{free_port()}",
            ),
            ok=(1,),
        )
        smtp = measure(
            reconciler("apply", "--auto-approve", *smtp_args, "--mail", f"smtp://127.0.0.1:{port}")
        )
        throughput = base_smtp.seconds / smtp.seconds
        rows.append(
            (f"deliver {n} queued messages over SMTP vs a bare smtplib loop", smtp, base_smtp, 0, 0)
        )
        print(
            f"  SMTP delivery: {smtp.seconds:.2f}s vs bare smtplib {base_smtp.seconds:.2f}s: "
            f"throughput {throughput:.0%} of the bare loop (target >= 80%)",
            flush=True,
        )
    finally:
        if sink.stdin:
            sink.stdin.close()
        sink.wait(timeout=30)

    if args.apply_all:
        compare(
            f"first apply, all {args.users} users, Maildir (no state)", first_apply(after), base, 0
        )

    print("\n| Measurement | Reconciler | Baseline | Ratio (time) | Ratio (peak memory) |")
    print("|---|---:|---:|---:|---:|")
    for label, run, b, _target, _mem in rows:
        print(
            f"| {label} | {run.seconds:.2f} s, {run.peak_mb:.0f} MB | {b.seconds:.2f} s, "
            f"{b.peak_mb:.0f} MB | {run.seconds / b.seconds:.2f}x | "
            f"{run.peak_mb / b.peak_mb:.2f}x |"
        )
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
