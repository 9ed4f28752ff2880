"""The quick ingest benchmark (``benchmarks/ingest.py --quick``): counts only, never time.

Runs the floor and four ``reconciler pull`` processes (a first pull, an unchanged re-pull,
one with the latest month changed and one with 1% more of the lines changed) against the
benchmark's in-memory provider, on SQLite and on PostgreSQL, and checks the lines each read
and the versions each added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ingest.py"
LINES = 3_000  # what --quick pulls, in pages of 500


@pytest.mark.slow
def test_the_quick_benchmark_reads_and_versions_every_line(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "runs.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    command = [sys.executable, str(SCRIPT), "--quick", "--json", str(out)]
    command += ["--postgres", postgres_admin_url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    runs = {(r["backend"], r["name"]): r for r in json.loads(out.read_text())}
    assert runs[("sqlite", "floor")]["lines_read"] == LINES
    for backend in ("sqlite", "postgresql"):
        counts = {
            name: (r["lines_read"], r["new_lines"], r["versions_added"])
            for (b, name), r in runs.items()
            if b == backend and name != "floor"
        }
        assert counts == {
            "first pull": (LINES, LINES, LINES),
            "unchanged re-pull": (LINES, 0, 0),
            "latest month changed": (LINES, 0, LINES // 12),  # one month of twelve
            "1% changed": (LINES, 0, LINES // 100),
        }
    assert "| sqlite | 3,000 | first pull |" in done.stdout
