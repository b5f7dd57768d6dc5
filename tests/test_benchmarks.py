"""The benchmark scripts still run end to end (tiny sizes): a figure in the README must stay
reproducible with the command it names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.patience import patience

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_every_measurement_at_a_tiny_size(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--users",
            "300",
            "--files",
            "3",
            "--apply-users",
            "30",
            "--apply-all",
            "--out",
            str(tmp_path / "bench"),
        ],
        capture_output=True,
        text=True,
        timeout=patience(300),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        "apply (no change) vs plan (no change), example tenant",
        "validate",
        "first plan --out (300 users, no state)",
        "import",
        "plan (1% changed)",
        "drift (live export of every enabled user, 1% changed in git) vs that plan",
        "plan (no change)",
        "plan (one file of 3 changed, 1% of its users)",
        "fmt --check",
        "first apply, 30 users, Maildir",
        "deliver 30 queued messages over SMTP vs a bare smtplib loop",
        "first apply, all 300 users, Maildir (no state)",
    ]


def test_the_graph_benchmark_runs_at_a_tiny_size() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "graph.py"),
            "--messages",
            "20",
            "--rate",
            "1200",
        ],
        capture_output=True,
        text=True,
        timeout=patience(300),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| --max-rate 1200/min |" in result.stdout and "pacing floor" in result.stdout


def test_the_export_reading_benchmark_runs_at_a_tiny_size() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "read_export.py"), "--users", "50"],
        capture_output=True,
        text=True,
        timeout=patience(120),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines()[2:]]
    assert [(r[0], r[2]) for r in rows] == [("| csv", "50"), ("| json", "50")]
