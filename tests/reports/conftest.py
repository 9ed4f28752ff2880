"""A seeded state (on SQLite and PostgreSQL) and the settings that describe it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.model import ReportData
from reconciler.settings import Settings
from tests.reports.seed import NOW, Seeded, report_settings, seed_state


@pytest.fixture
async def seeded(engine: AsyncEngine) -> Seeded:
    return await seed_state(engine)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return report_settings(tmp_path / "state")


@pytest.fixture
async def report(engine: AsyncEngine, seeded: Seeded, settings: Settings) -> ReportData:
    return await gather_report(engine, settings, ReportRequest.last_months(6, NOW), NOW)
