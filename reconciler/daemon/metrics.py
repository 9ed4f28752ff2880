"""Prometheus metrics of the daemon. Labels are bounded: sources, kinds, severities, outcomes,
currencies — never anything that grows with usage lines or months."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    exposition,
    generate_latest,
)

from reconciler.daemon.state_metrics import StateCollector
from reconciler.refresh import RunOutcome

disable_created_metrics()  # type: ignore[no-untyped-call]


class DaemonMetrics:
    """One registry per daemon, so tests can run several in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.state = StateCollector()  # usage, expectations, findings, pull ages from the DB
        r.register(self.state)
        self.pull_runs = Counter(
            "reconciler_pull_runs",
            "Pull runs by source and outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.run_duration = Histogram(
            "reconciler_pull_duration_seconds",
            "Duration of pull runs.",
            ["source"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.lines = Counter(
            "reconciler_lines_ingested",
            "Usage lines read from providers.",
            ["source"],
            registry=r,
        )
        self.changes = Counter(
            "reconciler_changes",
            "Drift changes recorded.",
            ["source", "kind", "severity"],
            registry=r,
        )
        self.findings = Counter(
            "reconciler_review_items_raised",
            "Review items raised or given new values.",
            ["source", "kind", "severity"],
            registry=r,
        )
        self.api_calls = Counter(
            "reconciler_provider_api_calls", "Provider API requests.", ["source"], registry=r
        )
        self.retries = Counter(
            "reconciler_provider_retries", "Provider API retries.", ["source"], registry=r
        )
        self.errors = Counter(
            "reconciler_provider_errors", "Pulls that failed.", ["source"], registry=r
        )
        self.outbox_depth = Gauge(
            "reconciler_alert_outbox_depth",
            "Alert messages waiting to be delivered.",
            registry=r,
        )
        self.alerts_held = Gauge(
            "reconciler_alert_messages_held",
            "Alert messages kept undelivered by reason: refused (webhook stopped until its URL "
            "changes), unconfigured (no webhook URL), unrecorded (answers the database refused).",
            ["reason"],
            registry=r,
        )
        self.alerts_sent = Counter(
            "reconciler_alerts_sent", "Alert messages delivered.", registry=r
        )
        self.alert_failures = Counter(
            "reconciler_alert_failures", "Alert messages refused for good.", registry=r
        )
        self.expected_cost = Gauge(
            "reconciler_expected_cost",
            "Expected cost of each source's open month to date, by the declared rates.",
            ["source", "currency"],
            registry=r,
        )
        self.projected_cost = Gauge(
            "reconciler_projected_invoice",
            "Projected invoice of each source's open month (volumes projected to month end).",
            ["source", "currency"],
            registry=r,
        )
        self.loop_stall = Gauge(
            "reconciler_event_loop_longest_stall_seconds",
            "The longest time the daemon's event loop was held by one piece of work since start "
            "(nothing else ran meanwhile: watchdog pings, lease renewals, health checks).",
            registry=r,
        )
        self.last_success = Gauge(
            "reconciler_last_successful_pull_timestamp_seconds",
            "When each source was last pulled successfully.",
            ["source"],
            registry=r,
        )

    def observe_run(self, outcome: RunOutcome, finished_at: float) -> None:
        source = outcome.source
        self.pull_runs.labels(source, "succeeded" if outcome.ok else "failed").inc()
        self.run_duration.labels(source).observe(outcome.duration_s)
        self.lines.labels(source).inc(outcome.stats.lines)
        self.api_calls.labels(source).inc(outcome.stats.api_calls)
        self.retries.labels(source).inc(outcome.stats.retries)
        if not outcome.ok:
            self.errors.labels(source).inc()
            return
        self.last_success.labels(source).set(finished_at)
        for change in outcome.ingest.changes:
            self.changes.labels(source, change.kind.value, change.severity.value).inc()
        for item in outcome.items.raised:
            self.findings.labels(source, item.kind, item.severity.value).inc()
        for cost in outcome.costs:
            # Gauges take floats: the exact amounts are in the state and the reports.
            self.expected_cost.labels(source, cost.currency).set(float(cost.to_date))
            self.projected_cost.labels(source, cost.currency).set(float(cost.projected))

    def render(self) -> tuple[bytes, str]:
        """The exposition text (state gauges as of their last :meth:`StateCollector.refresh`)."""
        return generate_latest(self.registry), exposition.CONTENT_TYPE_LATEST
