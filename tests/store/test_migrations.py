"""Each migration carries representative rows of the previous revision forward."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from reconciler.store.db import create_engine, current_revision, upgrade

NOW = datetime(2024, 6, 15, 6, 0, tzinfo=UTC)


async def test_0002_forecast_keeps_findings_and_adds_empty_forecasts(state_url: str) -> None:
    engine = create_engine(state_url, create=True)
    try:
        await upgrade(engine, "0001_initial")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO findings (fingerprint, category, kind, severity, source, "
                    "provider, account, product, product_name, usage_type, region, service, "
                    "month, after_quantity, after_unit, after_status, message, state, "
                    "values_hash, raised_at, updated_at, acknowledged_by) VALUES "
                    "('f1', 'finding', 'projected_overage', 'warning', 'cdn', 'fastly', '', '', "
                    "'bandwidth cap', '', '', '', '2024-06', '101.5', 'GB', 'collecting', "
                    "'projects 101.5 GB', 'acknowledged', 'h1', :now, :now, 'ops')"
                ),
                {"now": NOW.replace(tzinfo=None) if conn.dialect.name == "sqlite" else NOW},
            )
        await upgrade(engine)
        assert await current_revision(engine) == "0002_forecast"
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT fingerprint, kind, after_quantity, state, values_hash, "
                        "acknowledged_by, forecast, acknowledged_forecast FROM findings"
                    )
                )
            ).one()
        assert row.fingerprint == "f1"
        assert (row.kind, row.state, row.values_hash) == ("projected_overage", "acknowledged", "h1")
        assert str(row.after_quantity) == "101.5"
        assert row.acknowledged_by == "ops"
        assert (row.forecast, row.acknowledged_forecast) == (None, None)
    finally:
        await engine.dispose()
