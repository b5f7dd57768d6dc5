"""Delivering queued messages through ``graph://`` to the test suite's fake Microsoft Graph on
loopback HTTPS, with and without ``--max-rate``.

    python benchmarks/graph.py                 # 2,000 messages; --max-rate 6000/min
    python benchmarks/graph.py --messages 500 --rate 3000

A first apply queues the messages against a closed port (nothing is sent), then each measured
apply only delivers the queue, one ``sendMail`` per message (token cached by azure-identity),
each message marked delivered in its own transaction. The paced run is compared with the time
pacing alone must take (messages / rate): a ratio near 1 means ``--max-rate`` spaces messages
as asked and adds nothing of its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures import graph, smtp  # noqa: E402  (the suite's fake cloud and certificate)
from tests.helpers import enabled_users, tenant_doc, write_tenant  # noqa: E402


class _Factory:
    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name))


def start_cloud() -> tuple[graph.FakeCloud, ThreadingHTTPServer, Path]:
    files = smtp._tls_files.__wrapped__(_Factory())  # type: ignore[attr-defined]
    cloud = graph.FakeCloud()
    handler = type("BoundHandler", (graph._Handler,), {"cloud": cloud})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = smtp._server_context(files).wrap_socket(server.socket, server_side=True)
    cloud.url = f"https://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return cloud, server, files.certificate


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def apply(work: Path, env: dict[str, str], *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            "--auto-approve",
            "--allow-new-state",
            "--config",
            str(work / "tenants"),
            "--state",
            str(work / "state" / "state.db"),
            "--mail",
            f"graph://{graph.SENDER}",
            "--retry-backoff",
            "0",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"apply failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def queue(work: Path, env: dict[str, str], messages: int) -> None:
    if work.exists():
        shutil.rmtree(work)
    (work / "state").mkdir(parents=True)
    write_tenant(
        work / "tenants", "bench", tenant_doc(), enabled_users(messages, domain="contoso.com")
    )
    dead = {**env, "RECONCILER_GRAPH_URL": f"https://127.0.0.1:{closed_port()}"}
    apply(work, dead)  # everything committed and queued, nothing sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=6000.0, help="--max-rate, per minute")
    args = parser.parse_args()
    cloud, server, certificate = start_cloud()
    env = {
        **os.environ,
        **cloud.env(),
        "SSL_CERT_FILE": str(certificate),
        "REQUESTS_CA_BUNDLE": str(certificate),
        "PYTHONPATH": str(ROOT),
    }
    base = Path(tempfile.mkdtemp(prefix="graph-bench"))
    try:
        queue(base / "free", env, args.messages)
        free = apply(base / "free", env)
        assert len(cloud.sent) == args.messages, len(cloud.sent)
        queue(base / "paced", env, args.messages)
        paced = apply(base / "paced", env, "--max-rate", f"{args.rate:g}/min")
        assert len(cloud.sent) == 2 * args.messages, len(cloud.sent)
    finally:
        server.shutdown()
        shutil.rmtree(base, ignore_errors=True)
    floor = args.messages / args.rate * 60
    print(f"| Delivery of {args.messages} queued messages to the fake Graph | Time | Rate |")
    print("|---|---:|---:|")
    print(f"| no limit | {free:.2f} s | {args.messages / free * 60:.0f}/min |")
    print(
        f"| --max-rate {args.rate:g}/min | {paced:.2f} s | {args.messages / paced * 60:.0f}/min |"
    )
    print(
        f"\npacing floor {floor:.2f} s; paced / floor = {paced / floor:.2f}; "
        f"paced / unlimited = {paced / free:.2f}; tokens requested: {len(cloud.tokens)}"
    )


if __name__ == "__main__":
    main()
