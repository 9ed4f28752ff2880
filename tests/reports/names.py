"""Names and fixed values of the seeded report state (see :mod:`tests.reports.seed`)."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.domain import Month

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
MONTHS = Month(2024, 1).range_to(Month(2024, 6))
CURRENT = Month(2024, 6)
FASTLY = "fastly-prod"
AKAMAI = "akamai-main"
FASTLY_ACCOUNT = "x4xCwxxJxGCx123Rx5xTx"
AKAMAI_CONTRACT = "K-0N7RAK7"

HOSTILE_PRODUCT = "<script>alert(1)</script>"
HOSTILE_USAGE = '"><img src=x onerror=alert(2)>'
HOSTILE_SERVICE = "</svg><script>alert(3)</script>"
HOSTILE_MESSAGE = "<b>bold</b> & | pipe | `tick` *star* [link](javascript:alert(4)) ]]>"
