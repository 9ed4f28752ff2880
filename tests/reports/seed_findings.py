"""The seeded review items: open, acknowledged and resolved findings of several kinds."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from reconciler.store.tables import FindingRow
from tests.reports.names import (
    AKAMAI,
    AKAMAI_CONTRACT,
    FASTLY,
    FASTLY_ACCOUNT,
    HOSTILE_MESSAGE,
    HOSTILE_PRODUCT,
    HOSTILE_USAGE,
)

D = Decimal


def write_findings(
    session: AsyncSession, runs: dict[str, list[int]], hostile: bool
) -> dict[str, str]:
    """Add the findings; returns each fingerprint's state."""
    states: dict[str, str] = {}
    fastly_runs, akamai_runs = runs[FASTLY], runs[AKAMAI]
    june5 = datetime(2024, 6, 5, 6, 1, tzinfo=UTC)
    june15 = datetime(2024, 6, 15, 6, 1, tzinfo=UTC)
    message = HOSTILE_MESSAGE if hostile else ""
    image_name = HOSTILE_PRODUCT if hostile else "Image Optimizer"
    image_usage = HOSTILE_USAGE if hostile else "Images"
    rows: list[dict[str, Any]] = [
        {
            "fingerprint": "f-restated-fastly",
            "category": "drift",
            "kind": "restated",
            "severity": "critical",
            "source": FASTLY,
            "provider": "fastly",
            "account": FASTLY_ACCOUNT,
            "product": "cdn_usage",
            "product_name": "Full-Site Delivery",
            "usage_type": "North America Bandwidth",
            "region": "North America",
            "month": "2024-04",
            "before": (D(43500), "GB", "finalized"),
            "after": (D(44800), "GB", "finalized"),
            "state": "open",
            "raised_at": june5,
            "run": fastly_runs[1],
        },
        {
            "fingerprint": "f-restated-akamai",
            "category": "drift",
            "kind": "restated",
            "severity": "critical",
            "source": AKAMAI,
            "provider": "akamai",
            "account": AKAMAI_CONTRACT,
            "product": "1-ABC012",
            "product_name": "Web Application Accelerator",
            "usage_type": "Total MB",
            "region": "EMEA",
            "month": "2024-03",
            "before": (D("72.5"), "GB", "finalized"),
            "after": (D(60), "GB", "finalized"),
            "state": "open",
            "raised_at": june5,
            "run": akamai_runs[1],
        },
        {
            "fingerprint": "f-projected",
            "category": "finding",
            "kind": "projected_overage",
            "severity": "warning",
            "source": FASTLY,
            "provider": "fastly",
            "product": "cdn_usage",
            "usage_type": "North America Bandwidth",
            "month": "2024-06",
            "before": (D(50000), "GB", "collecting"),
            "after": (D("62208.22"), "GB", "collecting"),
            "state": "open",
            "raised_at": june15,
            "run": fastly_runs[3],
            "message": "NA bandwidth commitment: run rate projects above monthly_max",
        },
        {
            "fingerprint": "f-image",
            "category": "drift",
            "kind": "grew",
            "severity": "info",
            "source": FASTLY,
            "provider": "fastly",
            "account": FASTLY_ACCOUNT,
            "product": "image_optimizer",
            "product_name": image_name,
            "usage_type": image_usage,
            "region": "Global",
            "month": "2024-06",
            "before": (D(4000), "unit", "collecting"),
            "after": (D(5000), "unit", "collecting"),
            "state": "open",
            "raised_at": june15,
            "run": fastly_runs[3],
            "message": message,
        },
        {
            "fingerprint": "f-over-feb",
            "category": "finding",
            "kind": "over_expectation",
            "severity": "warning",
            "source": AKAMAI,
            "provider": "akamai",
            "product": "1-ABC012",
            "usage_type": "Total MB",
            "month": "2024-05",
            "before": (D(363), "GB", "finalized"),
            "after": (D(352), "GB", "finalized"),
            "state": "acknowledged",
            "raised_at": june5,
            "run": akamai_runs[1],
            "acknowledged_at": datetime(2024, 6, 6, 9, tzinfo=UTC),
            "acknowledged_by": "alice" if not hostile else "<u>mallory</u>",
            "ack_note": "expected: launch traffic" if not hostile else message,
        },
        {
            "fingerprint": "f-invoice",
            "category": "finding",
            "kind": "invoice_mismatch",
            "severity": "critical",
            "source": AKAMAI,
            "provider": "akamai",
            "product": "1-ABC012",
            "usage_type": "Total MB",
            "month": "2024-04",
            "before": (D(331), "GB", "finalized"),
            "after": (D(345), "GB", "finalized"),
            "state": "resolved",
            "raised_at": datetime(2024, 5, 3, 6, 1, tzinfo=UTC),
            "run": akamai_runs[0],
            "resolved_at": datetime(2024, 6, 15, 6, 2, tzinfo=UTC),
        },
        {
            "fingerprint": "f-decreased",
            "category": "drift",
            "kind": "decreased",
            "severity": "warning",
            "source": AKAMAI,
            "provider": "akamai",
            "account": AKAMAI_CONTRACT,
            "product": "M-LC-1234",
            "product_name": "Download Delivery",
            "usage_type": "Bandwidth",
            "region": "GLOBAL",
            "month": "2024-06",
            "before": (D(1300), "GB", "collecting"),
            "after": (D(1200), "GB", "collecting"),
            "state": "open",
            "raised_at": datetime(2024, 6, 14, 6, 1, tzinfo=UTC),
            "run": akamai_runs[1],
        },
        {
            "fingerprint": "f-old",
            "category": "drift",
            "kind": "restated",
            "severity": "critical",
            "source": FASTLY,
            "provider": "fastly",
            "account": FASTLY_ACCOUNT,
            "product": "cdn_usage",
            "product_name": "Full-Site Delivery",
            "usage_type": "Europe Bandwidth",
            "region": "Europe",
            "month": "2023-11",
            "before": (D(1), "GB", "finalized"),
            "after": (D(2), "GB", "finalized"),
            "state": "open",
            "raised_at": datetime(2023, 12, 5, tzinfo=UTC),
            "run": fastly_runs[0],
        },
    ]
    for spec in rows:
        before, after = spec.pop("before"), spec.pop("after")
        run = spec.pop("run")
        session.add(
            FindingRow(
                **spec,
                before_quantity=before[0],
                before_unit=before[1],
                before_status=before[2],
                after_quantity=after[0],
                after_unit=after[1],
                after_status=after[2],
                values_hash=spec["fingerprint"],
                first_run_id=run,
                last_run_id=run,
                updated_at=spec["raised_at"],
            )
        )
        states[spec["fingerprint"]] = spec["state"]
    return states
