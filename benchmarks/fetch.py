"""Pull the large scenario's 1,008,000 Fastly service lines through the provider client.

The sandbox runs as its own process (``reconciler.sandbox.cli serve --scenario large``); this
process runs :class:`~reconciler.providers.fastly.FastlyProvider` exactly as the engine does
(invoices, account usage in 3-month windows, service usage at limit 10000, strict
normalization into UsageLine values) and drops each page once counted: no database. Prints
the wall time, lines per second, pages, API calls, this process's CPU time (the client's own
cost, steadier than wall time on a busy machine) and its peak resident memory, which stays
bounded by a page however many lines go through.

    .venv/bin/python benchmarks/fetch.py [--limit 10000] [--scenario large] [--months 18]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from datetime import date


async def _start_server(scenario: str) -> tuple[asyncio.subprocess.Process, str, date]:
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
    match = re.search(r"today (\d{4}-\d{2}-\d{2}), serving (http://\S+)$", first.strip())
    if match is None:
        proc.kill()
        raise SystemExit(f"could not start the sandbox: {first!r}")
    return proc, match.group(2), date.fromisoformat(match.group(1))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def main(limit: int, scenario: str, months: int) -> None:
    from reconciler.providers.fastly import FastlyProvider
    from reconciler.providers.http import HttpClient
    from reconciler.settings import FastlySourceSettings

    proc, base_url, today = await _start_server(scenario)
    try:
        settings = FastlySourceSettings(
            name="bench", provider="fastly", base_url=base_url, lookback_months=months
        )
        environ = {"FASTLY_API_TOKEN": "sandbox-fastly-token"}
        rss_before = _peak_rss_mib()
        async with HttpClient() as http:
            provider = FastlyProvider.from_settings(settings, 0, http, environ, page_limit=limit)
            service_lines = 0
            largest_page = 0
            started, cpu_started = time.perf_counter(), _cpu_s()
            async for page in provider.pull(today):
                service_lines += sum(1 for line in page if line.service)
                largest_page = max(largest_page, len(page))
            elapsed, cpu = time.perf_counter() - started, _cpu_s() - cpu_started
        stats = provider.stats
        print(f"scenario {scenario}: {months} months to {today}, service page limit {limit}")
        print(
            f"lines: {stats.lines:,} ({service_lines:,} service-level) in {elapsed:.2f}s "
            f"= {stats.lines / elapsed:,.0f} lines/s"
        )
        print(
            f"pages: {stats.pages} (largest {largest_page:,} lines), "
            f"API calls: {stats.api_calls}, retries: {stats.retries}"
        )
        print(
            f"client CPU: {cpu:.2f}s = {stats.lines / cpu:,.0f} lines per CPU second "
            "(wall time also counts the sandbox computing pages, and waiting for a CPU)"
        )
        print(f"client peak RSS: {_peak_rss_mib():.0f} MiB (before the pull: {rss_before:.0f} MiB)")
    finally:
        proc.terminate()
        await proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10000, help="service usage page size")
    parser.add_argument("--scenario", default="large", help="sandbox scenario name")
    parser.add_argument("--months", type=int, default=18, help="lookback_months")
    args = parser.parse_args()
    asyncio.run(main(args.limit, args.scenario, args.months))
