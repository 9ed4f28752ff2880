"""Quick runs of the start-up and Akamai concurrency benchmarks: what they count, never time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FASTLY_"))}
    command = [sys.executable, str(BENCHMARKS / script), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_startup_benchmark_times_each_command_and_names_what_it_imported() -> None:
    out = _run("startup.py", "--runs", "1")
    rows = dict(re.findall(r"^(\S.*?)\s+min [\d.]+s .*heavy modules imported: (.*)\)$", out, re.M))
    assert rows == {
        "--version": "none",
        "--help": "none",  # help lists every command from its summary, importing none
        "config check": "none",
        "pull (tiny, unchanged)": "none",
    }
    assert "fastly-sandbox: 6 lines read" in out


@pytest.mark.slow
def test_the_akamai_benchmark_reads_the_same_at_any_concurrency_within_the_limit() -> None:
    out = _run(
        "akamai_concurrency.py", "--latency-ms", "5", "--months", "2", "--concurrency", "1", "4"
    )
    rows = {
        int(limit): tuple(int(n) for n in counts)
        for limit, *counts in re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", out, re.M)
    }
    assert set(rows) == {1, 4}, out
    for limit, (requests, in_flight, _) in rows.items():
        assert requests == 1 + 25 + 25 * 8  # contracts, products per contract, one summary each
        assert 1 <= in_flight <= limit
    assert rows[1][2] == rows[4][2] > 0  # the same lines, however many requests at once
