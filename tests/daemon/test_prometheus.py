"""A real Prometheus (Debian's package) scrapes a real daemon on loopback; the metrics come
back through Prometheus's HTTP API, ``promtool check metrics`` finds nothing to complain
about, and the shipped alerting rules load and pass ``promtool check rules``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.cli.setup_cmds import to_toml
from reconciler.sandbox.server import SandboxServer
from tests.daemon.support import FAST_DAEMON, eventually, fastly_source, free_port
from tests.daemon.test_daemon import Spawn, db_url, sandbox, spawn, state, succeeded_runs

__all__ = ["db_url", "sandbox", "spawn", "state"]  # fixtures

RULES = Path(__file__).parents[2] / "config" / "prometheus-rules.yml"
DASHBOARD = Path(__file__).parents[2] / "config" / "grafana-dashboard.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (Debian package 'prometheus')"
    return path


def test_the_shipped_rules_pass_promtool() -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs and dashboard["uid"] == "reconciler-cdn"
    exported = {
        "reconciler_expectation_month_to_date",
        "reconciler_expectation_forecast",
        "reconciler_expectation_forecast_low",
        "reconciler_expectation_forecast_high",
        "reconciler_expectation_maximum",
        "reconciler_usage_month_to_date",
        "reconciler_expected_cost",
        "reconciler_projected_invoice",
        "reconciler_open_findings",
        "reconciler_source_last_success_age_seconds",
        "reconciler_alert_outbox_depth",
        "reconciler_alert_messages_held",
    }
    for expr in exprs:
        assert any(name in expr for name in exported), expr


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Callable[[int], Any]]:
    processes: list[asyncio.subprocess.Process] = []

    async def start(target_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: ['{RULES}']\n"
            "scrape_configs:\n  - job_name: reconciler\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            encoding="utf-8",
        )
        process = await asyncio.create_subprocess_exec(
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        processes.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        async with asyncio.timeout(60):
            await process.wait()


async def _query(http: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    try:
        async with (
            asyncio.timeout(10),
            http.get(f"{base}/api/v1/query", params={"query": expr}) as response,
        ):
            if response.status != 200:
                return []
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError):
        return []  # not up yet
    return list(body["data"]["result"])


async def test_prometheus_scrapes_the_daemon_and_reads_the_metrics_back(
    sandbox: SandboxServer,
    spawn: Spawn,
    db_url: str,
    tmp_path: Path,
    state: Callable[[], AsyncEngine],
    prometheus: Callable[[int], Any],
) -> None:
    port = free_port()
    config = tmp_path / "reconciler.toml"
    data = {
        "state": {"database_url": db_url, "directory": str(tmp_path / "state")},
        "daemon": {**FAST_DAEMON, "listen": f"127.0.0.1:{port}", "metrics_services": 2},
        "sources": [fastly_source(sandbox)],
        "expectations": [
            {"name": "bandwidth commit", "source": "fastly", "monthly_max": "1", "unit": "GB"}
        ],
    }
    config.write_text(to_toml(data))
    daemon = await spawn(config)
    await daemon.wait_for_log("started")
    await eventually(lambda: succeeded_runs(state(), "fastly", 1), timeout_s=120)

    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(30), http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        lint = await asyncio.create_subprocess_exec(
            _tool("promtool"),
            "check",
            "metrics",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(120):
            complaints, _ = await lint.communicate(text.encode())
        assert (lint.returncode, complaints.decode()) == (0, "")
        assert 'reconciler_usage_month_to_date{month_status="' in text
        assert 'reconciler_service_usage_month_to_date{month_status="' in text  # linted too

        base = await prometheus(port)

        async def scraped(expr: str) -> list[dict[str, Any]]:
            return await _query(http, base, expr)

        usage = await eventually(
            lambda: scraped('reconciler_usage_month_to_date{source="fastly"}'),
            timeout_s=180,
            every_s=1,
        )
        assert {r["metric"]["job"] for r in usage} == {"reconciler"}
        assert all(float(r["value"][1]) >= 0 for r in usage)
        assert {"product", "usage_type", "unit", "month_status"} <= set(usage[0]["metric"])
        assert all("service" not in r["metric"] for r in usage)  # bounded labels
        per_service = 'reconciler_service_usage_month_to_date{source="fastly"}'
        services = await eventually(
            lambda: scraped(f"count(count by (service) ({per_service}))"),
            timeout_s=60,
            every_s=1,
        )
        assert float(services[0]["value"][1]) == 3  # the sandbox's 3: the cap of 2, and "other"
        folded = await scraped('reconciler_services_in_other{source="fastly"}')
        assert [float(r["value"][1]) for r in folded] == [1.0]
        age = await eventually(
            lambda: scraped('reconciler_source_last_success_age_seconds{source="fastly"}'),
            timeout_s=60,
            every_s=1,
        )
        assert float(age[0]["value"][1]) >= 0
        maximum = await eventually(
            lambda: scraped('reconciler_expectation_maximum{expectation="bandwidth commit"}'),
            timeout_s=60,
            every_s=1,
        )
        assert float(maximum[0]["value"][1]) == 1.0
        # The month is already above its 1 GB maximum: the shipped rule fires in Prometheus.
        firing = await eventually(
            lambda: scraped('ALERTS{alertname="ReconcilerMonthOverMaximum"}'),
            timeout_s=120,
            every_s=1,
        )
        assert firing[0]["metric"]["expectation"] == "bandwidth commit"
    await daemon.stop()
