"""Reading a live Teams export of N users, as `drift` and `init` read it: wall time and peak RSS
of a fresh process per format (CSV as Windows PowerShell 5's `Export-Csv` writes it, JSON as
`ConvertTo-Json` indents it), against the file's size.

    python benchmarks/read_export.py --users 300000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = (
    "Identity",
    "DisplayName",
    "ConferenceId",
    "ServiceNumber",
    "TollFreeServiceNumber",
    "Provider",
    "AllowTollFreeDialIn",
    "BridgeName",
)


def user(n: int) -> tuple[object, ...]:
    upn = f"user{n:06d}@contoso.com"
    return (upn, f"User {n}", 7000000 + n, "14255550100", "", "Microsoft", True, "Bridge")


def write_exports(folder: Path, users: int) -> dict[str, Path]:
    csv_path, json_path = folder / "users.csv", folder / "users.json"
    with open(csv_path, "w", encoding="utf-8-sig", newline="") as out:
        out.write("#TYPE Microsoft.Rtc.Management.Hosted.Bridge\r\n")
        out.write(",".join(f'"{c}"' for c in COLUMNS) + "\r\n")
        for n in range(users):
            out.write(",".join(f'"{v}"' for v in user(n)) + "\r\n")
    with open(json_path, "w", encoding="utf-8") as out:
        out.write("[\n")
        for n in range(users):
            entry = json.dumps(dict(zip(COLUMNS, user(n), strict=True)), indent=4)
            out.write(("    " + entry.replace("\n", "\n    ")) + (",\n" if n < users - 1 else "\n"))
        out.write("]\n")
    return {"csv": csv_path, "json": json_path}


READ = """
import sys
from pathlib import Path
from reconciler.config.export_reader import open_export
export, rows = open_export(Path(sys.argv[1]))
count = sum(1 for _ in rows)
assert not export.problems, export.problems
print(count)
"""


def measure(path: Path) -> tuple[float, float, int]:
    """Seconds, peak RSS (MB) and rows of one fresh process reading ``path``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", READ, str(path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    rows = int(process.stdout.read())
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0
    return time.perf_counter() - started, usage.ru_maxrss / 1024, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        exports = write_exports(Path(folder), args.users)
        print("| Export | File | Rows | Time | Peak RSS |")
        print("|---|---:|---:|---:|---:|")
        for kind, path in exports.items():
            seconds, peak, rows = measure(path)
            assert rows == args.users
            size = path.stat().st_size / 2**20
            print(f"| {kind} | {size:.0f} MiB | {rows:,} | {seconds:.2f} s | {peak:.0f} MB |")


if __name__ == "__main__":
    main()
