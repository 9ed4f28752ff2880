"""The JSON report: the same data for machines, with ``format_version`` 1.

Quantities are exact decimal strings (canonical: no exponent, no trailing zeros), times are
ISO 8601 UTC with a ``Z``, months ``YYYY-MM``. Review items carry the same fields as
``reconciler plan --json`` plus their state and lifecycle times.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from reconciler.domain import FindingState, canonical_decimal
from reconciler.reconcile.forecast import forecast_json
from reconciler.reconcile.plan import item_json as plan_item_json
from reconciler.reports.cost_render import cost_json
from reconciler.reports.history import RECENT_RUNS_WINDOW
from reconciler.reports.model import (
    Band,
    FindingEntry,
    Projection,
    ReportData,
    RestatedLine,
    Series,
    SourceHealth,
)
from reconciler.reports.showback_render import showback_json

FORMAT_VERSION = 1


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else canonical_decimal(value)


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def item_json(entry: FindingEntry) -> dict[str, Any]:
    """The plan's JSON shape of an item, plus its category and review history."""
    return {
        "category": entry.item.category.value,
        **plan_item_json(entry.item),
        "state": entry.state.value,
        "raised_at": _time(entry.raised_at),
        "updated_at": _time(entry.updated_at),
        "acknowledged_at": _time(entry.acknowledged_at),
        "acknowledged_by": entry.acknowledged_by,
        "ack_note": entry.ack_note,
        "resolved_at": _time(entry.resolved_at),
    }


def _health(h: SourceHealth) -> dict[str, Any]:
    return {
        "source": h.source,
        "provider": h.provider,
        "last_status": h.last_status,
        "last_started_at": _time(h.last_started_at),
        "last_success_at": _time(h.last_success_at),
        "last_duration_s": h.last_duration_s,
        "last_api_calls": h.last_api_calls,
        "last_lines_read": h.last_lines_read,
        "last_error": h.last_error,
        "failures_since_success": h.failures_since_success,
        "recent_days": RECENT_RUNS_WINDOW.days,
        "recent_runs": h.recent_runs,
        "recent_failures": h.recent_failures,
        "recent_api_calls": h.recent_api_calls,
        "recent_retries": h.recent_retries,
    }


def _band(band: Band | None) -> dict[str, Any] | None:
    if band is None:
        return None
    return {
        "low": _decimal(band.low),
        "high": _decimal(band.high),
        "expectations": list(band.labels),
        "invoices": {str(m): _decimal(q) for m, q in sorted(band.invoices.items())},
    }


def _projection(p: Projection | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "month": str(p.month),
        "to_date": _decimal(p.to_date),
        "covered_days": p.covered_days,
        "days": p.days,
        "projected": _decimal(p.projected),
        "forecast": forecast_json(p.forecast),
        "limit": _decimal(p.limit),
        "over": p.over,
    }


def _series(s: Series) -> dict[str, Any]:
    return {
        "source": s.source,
        "provider": s.provider,
        "product": s.product,
        "product_name": s.product_name,
        "usage_type": s.usage_type,
        "unit": s.unit,
        "measure_kind": s.kind.value,
        "region": s.region,
        "findings": s.findings,
        "months": [
            {
                "month": str(p.month),
                "quantity": _decimal(p.quantity),
                "status": p.status.value,
                "lines": p.lines,
                "lower_bound": s.lower_bound(p),
            }
            for p in s.points
        ],
        "expectation": _band(s.band),
        "projection": _projection(s.projection),
        "expectations_in_other_units": list(s.unmatched_expectations),
    }


def _restated(line: RestatedLine) -> dict[str, Any]:
    return {
        "source": line.source,
        "provider": line.provider,
        "account": line.account,
        "product": line.product,
        "product_name": line.product_name,
        "usage_type": line.usage_type,
        "region": line.region,
        "service": line.service,
        "service_name": line.service_name,
        "month": str(line.month),
        "period_start": line.period_start.isoformat(),
        "period_end": line.period_end.isoformat(),
        "first_finalized": _decimal(line.first_finalized),
        "current": _decimal(line.current),
        "versions": [
            {
                "run_id": v.run_id,
                "recorded_at": _time(v.recorded_at),
                "quantity": _decimal(v.quantity),
                "unit": v.unit,
                "status": v.status.value,
            }
            for v in line.versions
        ],
    }


def report_json(data: ReportData) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    changes = data.changes
    return {
        "format_version": FORMAT_VERSION,
        "generated_at": _time(data.generated_at),
        "months": {"first": str(data.first_month), "last": str(data.last_month)},
        "sources": list(data.sources),
        "summary": {
            "open": data.findings[FindingState.OPEN].total,
            "open_by_severity": {s.value: n for s, n in data.open_by_severity.items()},
            "acknowledged": data.findings[FindingState.ACKNOWLEDGED].total,
            "resolved": data.findings[FindingState.RESOLVED].total,
            "changes": {
                "since": _time(changes.since),
                "basis": changes.basis,
                "raised": [e.item.fingerprint for e in changes.raised],
                "acknowledged": changes.acknowledged,
                "resolved": changes.resolved,
            },
        },
        "health": [_health(h) for h in data.health],
        "series": [_series(s) for s in data.series],
        "series_total": data.series_total,
        "series_omitted": data.series_omitted,
        "restated": [_restated(line) for line in data.restated],
        "restated_total": data.restated_total,
        "findings": {
            state.value: {
                "total": table.total,
                "omitted": table.omitted,
                "items": [item_json(e) for e in table.entries],
            }
            for state, table in data.findings.items()
        },
        "costs": cost_json(data.costs),
        "teams": showback_json(data.costs.showback if data.costs else None),
    }


def render_json(data: ReportData) -> str:
    return json.dumps(report_json(data), indent=2, ensure_ascii=False) + "\n"
