"""Each migration carries the rows of the revision before it forward (on both backends)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from reconciler.alerts.blocks import blocks_t, load_blocks
from reconciler.store.db import create_engine, current_revision, head_revision, upgrade

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


async def test_0002_alert_blocks_keeps_the_outbox(state_url: str) -> None:
    engine = create_engine(state_url, create=True)
    try:
        await upgrade(engine, "0001_initial")
        async with engine.begin() as conn:
            for run_id, state in ((1, "sent"), (2, "pending"), (3, "failed")):
                await conn.execute(
                    text(
                        "INSERT INTO alert_outbox (source, run_id, kind, route, payload, state,"
                        " attempts, next_attempt_at, last_error, created_at)"
                        " VALUES ('prod', :run, 'run', 'default', '{\"text\":\"x\"}', :state,"
                        " 1, :at, :error, :at)"
                    ),
                    {"run": run_id, "state": state, "at": T0, "error": f"e{run_id}"},
                )

        await upgrade(engine, "0002_alert_blocks")

        assert await current_revision(engine) == "0002_alert_blocks"
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT run_id, state, attempts, last_error, payload FROM alert_outbox"
                        " ORDER BY id"
                    )
                )
            ).all()
            assert [tuple(r) for r in rows] == [
                (1, "sent", 1, "e1", '{"text":"x"}'),
                (2, "pending", 1, "e2", '{"text":"x"}'),
                (3, "failed", 1, "e3", '{"text":"x"}'),
            ]
            await conn.execute(
                blocks_t.insert().values(
                    key="k", destination="default", reason="refused", blocked_at=T0
                )
            )
            await conn.commit()
        assert list(await load_blocks(engine)) == ["k"]
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
