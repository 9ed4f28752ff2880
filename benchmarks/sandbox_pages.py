"""Page through the large scenario's 1,008,000 Fastly service lines over HTTP at limit 10000.

Runs the sandbox as its own process (``reconciler.sandbox.cli serve --scenario large``) so its
memory can be read from /proc: the point is that it stays flat however many lines it serves,
because pages are generated from the cursor, never stored. Prints the wall time, the rate,
the server's resident memory before and at its peak, and the client's peak.

    .venv/bin/python benchmarks/sandbox_pages.py [--limit 10000] [--scenario large]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path


def _status_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    return int(match.group(1)) if match else -1


async def _start_server(scenario: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler.sandbox.cli",
        "serve",
        "--port",
        "0",
        "--scenario",
        scenario,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        first = (await proc.stdout.readline()).decode()
    match = re.search(r"serving (http://\S+)$", first.strip())
    if match is None:
        proc.kill()
        raise SystemExit(f"could not start the sandbox: {first!r}")
    return proc, match.group(1)


async def main(limit: int, scenario: str) -> None:
    import aiohttp

    proc, base_url = await _start_server(scenario)
    try:
        rss_start = _status_kib(proc.pid, "VmRSS")
        headers = {"Fastly-Key": "sandbox-fastly-token"}
        url = f"{base_url}/billing/v3/service-usage-metrics"
        records = pages = 0
        total = None
        cursor = ""
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                params = {"limit": str(limit), "cursor": cursor}
                async with session.get(url, params=params, headers=headers) as resp:
                    resp.raise_for_status()
                    page = json.loads(await resp.read(), parse_float=Decimal)
                pages += 1
                records += len(page["data"])
                total = page["meta"]["total"]
                cursor = page["meta"]["next_cursor"]
                if not cursor:
                    break
        elapsed = time.perf_counter() - started
        rss_peak = _status_kib(proc.pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    client_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"scenario {scenario}: {records:,} service lines (meta.total {total:,}) in {pages} pages")
    print(f"limit {limit}: {elapsed:.1f} s, {records / elapsed:,.0f} lines/s, "
          f"{elapsed / pages * 1000:.0f} ms/page")  # fmt: skip
    print(f"sandbox RSS: {rss_start / 1024:.0f} MiB after start, peak {rss_peak / 1024:.0f} MiB")
    print(f"client peak RSS: {client_peak_kib / 1024:.0f} MiB")
    if records != total:
        raise SystemExit(f"walked {records} records but meta.total is {total}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--scenario", default="large")
    args = parser.parse_args()
    asyncio.run(main(args.limit, args.scenario))
