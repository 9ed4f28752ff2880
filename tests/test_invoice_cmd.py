"""``reconciler state invoices`` through the real entry point, on a state pulled from the
sandbox's tiered invoices with fee, tax and subscription lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.db import create_engine, upgrade


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("invoices"), host="127.0.0.1", port=0) as server:
        yield server


def reconciler(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_state_invoices_shows_each_item_as_what_it_is(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    source = {"name": "fastly", "provider": "fastly", "base_url": sandbox.base_url}
    settings = settings_from_mapping({"state": {"database_url": url}, "sources": [source]})
    engine = create_engine(url, create=True)
    try:
        await upgrade(engine)
        async with HttpClient() as http:
            outcome = await refresh_source(
                engine,
                settings,
                "fastly",
                http,
                today=date(2024, 7, 10),
                environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
            )
        assert outcome.ok, outcome.error
    finally:
        await engine.dispose()
    config = tmp_path / "reconciler.toml"
    config.write_text(
        f'[state]\ndatabase_url = "{url}"\n\n[[sources]]\nname = "fastly"\nprovider = "fastly"\n'
    )

    as_json = reconciler(config, "state", "invoices", "--month", "2024-06", "--json")
    assert as_json.returncode == 0, as_json.stderr
    items = [json.loads(line) for line in as_json.stdout.splitlines()]
    kinds = [item["kind"] for item in items]
    assert kinds.count("usage") == 8  # two tiers of four usage types
    assert kinds.count("not usage") == 2  # the platform fee and the sales tax
    assert kinds.count("other period") == 1  # the subscription billed 06-05..07-04
    fee = next(item for item in items if item["description"] == "Platform fee")
    assert (fee["units"], fee["amount"], fee["currency"]) == ("1", "250", "USD")

    text = reconciler(config, "state", "invoices", "--month", "2024-06")
    assert text.returncode == 0, text.stderr
    monthly = fee["invoice_id"]
    subscription = next(i["invoice_id"] for i in items if i["kind"] == "other period")
    tax = next(item for item in items if item["description"] == "Sales tax")
    lines = text.stdout.splitlines()
    assert (
        f"fastly  2024-06  invoice {monthly} #8  not usage    Platform fee  units 1  250 USD"
        in lines
    )
    assert (
        f"fastly  2024-06  invoice {monthly} #9  not usage    Sales tax  {tax['amount']} USD"
        in lines
    )
    assert (
        f"fastly  2024-06  invoice {subscription} #0  other period Platform Subscription"
        " / subscription (Platform subscription)  units 1  500 USD"
    ) in lines
    assert len(lines) == len(items)

    bad = reconciler(config, "state", "invoices", "--month", "June")
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr and "--month" in bad.stderr
