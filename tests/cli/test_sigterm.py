"""SIGTERM to a CLI pull: the run is recorded as cancelled, nothing is stored, one line says so.

The pull is stopped while the sandbox holds one of its requests (a ``hang`` fault), which
the test sees in the sandbox's in-flight counter: no sleeping, no timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

from tests.security.support import TIMEOUT_S, cli, tampered_sandbox, write_config


async def test_sigterm_cancels_the_pull_and_stores_nothing(tmp_path: Path) -> None:
    async with tampered_sandbox() as (sandbox, _):
        write_config(tmp_path, sandbox)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        assert (await cli("init", cwd=tmp_path, env=env)).code == 0
        route = "fastly.service_usage_metrics"
        sandbox.state.add_faults([{"kind": "hang", "endpoint": route}])
        base = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "pull",
            "--source",
            "fastly",
            "--as-of",
            "2024-07-10",
            cwd=tmp_path,
            env={**base, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                # The sandbox's request counter has no event to wait on: poll it.
                while not sandbox.state.stats.in_flight[route]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
            sandbox.state.release()
    assert proc.returncode == 128 + signal.SIGTERM
    assert out.decode() == ""
    assert err.decode() == (
        "error: stopped by SIGTERM: the pull in progress was cancelled and nothing was stored\n"
    )
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    try:
        runs = db.execute("SELECT source, status, error FROM pull_runs").fetchall()
        lines = db.execute("SELECT count(*) FROM usage_lines").fetchone()[0]
        staged = db.execute("SELECT count(*) FROM staging_lines").fetchone()[0]
    finally:
        db.close()
    assert runs == [("fastly", "failed", "cancelled")]
    assert (lines, staged) == (0, 0)
