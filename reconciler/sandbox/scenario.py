"""Scenarios: the parameters of a sandbox account, and deterministic numbers drawn from them.

A :class:`Scenario` is a frozen set of parameters. Every value the sandbox serves is computed
from ``(seed, line identity, month)`` with a keyed hash, never stored, so the same seed always
gives the same bytes and a scenario with a million lines costs no more memory than a small one.

Each line has an integer daily rate; a month's quantity is ``rate x days elapsed`` (exact,
O(1)), with days counted through the simulated ``today`` for the open month and all days for a
closed one. A month finalizes ``finalize_after_days`` days after its last day.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from reconciler.domain import Month
from reconciler.sandbox.catalog import (
    AKAMAI_PRODUCTS,
    FASTLY_USAGE_TYPES,
    SEED_ACCOUNT_ID,
    SEED_CUSTOMER_ID,
)

SERVICE_USAGE_SHAPES = ("current", "nested")
_FIRST_MONTH = Month(2024, 1)


@dataclass(frozen=True, slots=True)
class Scenario:
    """Parameters of one sandbox account pair (a Fastly customer and an Akamai account)."""

    name: str = "default"
    seed: int = 1
    today: date = date(2024, 7, 10)
    first_month: Month = _FIRST_MONTH
    finalize_after_days: int = 3
    retention_months: int = 18
    fastly_customer_id: str = SEED_CUSTOMER_ID
    fastly_services: int = 3
    fastly_usage_types: int = 4
    fastly_service_usage_shape: str = "current"
    fastly_usage_meta: bool = True
    # Invoices as real accounts get them: price tiers (two line items per usage type), fee and
    # tax lines (no product, no usage type), a subscription invoice whose billing period starts
    # on the 5th of each month and ends on the 4th of the next.
    fastly_invoice_tiers: bool = False
    fastly_invoice_fees: bool = False
    fastly_midmonth_invoices: bool = False
    akamai_account_id: str = SEED_ACCOUNT_ID
    akamai_contracts: int = 1
    akamai_products_per_contract: int = 3
    akamai_stats_per_product: int = 4
    akamai_oddities: bool = True
    # Every Akamai month arrives as two periods (1st-15th, 16th-end), as the real API may send.
    akamai_split_periods: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.fastly_services < 1:
            problems.append("fastly_services must be at least 1")
        if not 1 <= self.fastly_usage_types <= len(FASTLY_USAGE_TYPES):
            problems.append(f"fastly_usage_types must be 1..{len(FASTLY_USAGE_TYPES)}")
        if self.fastly_service_usage_shape not in SERVICE_USAGE_SHAPES:
            problems.append(f"fastly_service_usage_shape must be one of {SERVICE_USAGE_SHAPES}")
        if self.akamai_contracts < 1:
            problems.append("akamai_contracts must be at least 1")
        if not 1 <= self.akamai_products_per_contract <= len(AKAMAI_PRODUCTS):
            problems.append(f"akamai_products_per_contract must be 1..{len(AKAMAI_PRODUCTS)}")
        if not 1 <= self.akamai_stats_per_product <= 4:
            problems.append("akamai_stats_per_product must be 1..4")
        if self.finalize_after_days < 0:
            problems.append("finalize_after_days must not be negative")
        if self.retention_months < 1:
            problems.append("retention_months must be at least 1")
        if problems:
            raise ValueError(f"scenario {self.name!r}: " + "; ".join(problems))

    def replace(self, **changes: object) -> Scenario:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # --- the calendar -------------------------------------------------------------------

    def finalized_on(self, month: Month) -> date:
        """The day a month's data is final (Akamai DATA_FINALIZED, Fastly invoice posted)."""
        return month.last_day + timedelta(days=self.finalize_after_days)

    def is_finalized(self, month: Month, today: date) -> bool:
        return today >= self.finalized_on(month)

    def visible_months(self, today: date) -> list[Month]:
        """Months with data on ``today``: since the first month, within retention, not future."""
        current = Month.of(today)
        oldest = max(self.first_month, current - (self.retention_months - 1))
        if oldest > current:
            return []
        return oldest.range_to(current)

    def fastly_service_lines(self, today: date) -> int:
        """Service-level Fastly lines over every visible month (before any event)."""
        months = len(self.visible_months(today))
        return months * self.fastly_services * self.fastly_usage_types


def elapsed_days(first: date, last: date, as_of: date) -> int:
    """Days of ``first..last`` (inclusive) that have accrued by the end of ``as_of``."""
    if as_of < first:
        return 0
    return (min(as_of, last) - first).days + 1


def det_int(seed: int, *parts: object, low: int, high: int) -> int:
    """A deterministic integer in ``low..high`` keyed by the seed and ``parts``."""
    key = "|".join([str(seed), *(str(p) for p in parts)]).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return low + int.from_bytes(digest, "big") % (high - low + 1)


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def det_id(seed: int, *parts: object, length: int, alphabet: str = _ALNUM) -> str:
    """A deterministic identifier of ``length`` characters drawn from ``alphabet``."""
    key = "|".join([str(seed), *(str(p) for p in parts)]).encode()
    number = int.from_bytes(hashlib.blake2b(key, digest_size=32).digest(), "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


DEFAULT = Scenario()

SCENARIOS: dict[str, Scenario] = {
    "default": DEFAULT,
    "tiny": Scenario(
        name="tiny",
        first_month=Month(2024, 5),
        fastly_services=2,
        fastly_usage_types=2,
        akamai_products_per_contract=1,
        akamai_stats_per_product=2,
    ),
    "demo": Scenario(
        name="demo",
        seed=7,
        today=date(2024, 4, 1),
        first_month=Month(2024, 1),
        fastly_services=5,
        fastly_usage_types=6,
        akamai_products_per_contract=3,
    ),
    "invoices": Scenario(
        name="invoices",
        fastly_invoice_tiers=True,
        fastly_invoice_fees=True,
        fastly_midmonth_invoices=True,
    ),
    "large": Scenario(
        name="large",
        seed=42,
        first_month=Month(2023, 2),
        fastly_services=2800,
        fastly_usage_types=20,
        akamai_contracts=10,
        akamai_products_per_contract=5,
        akamai_oddities=False,
    ),
}


def named_scenario(name: str, *, seed: int | None = None, today: date | None = None) -> Scenario:
    """A scenario from :data:`SCENARIOS`, with the seed and the simulated day overridden."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown scenario {name!r} (known: {known})") from None
    changes: dict[str, object] = {}
    if seed is not None:
        changes["seed"] = seed
    if today is not None:
        changes["today"] = today
    return scenario.replace(**changes) if changes else scenario
