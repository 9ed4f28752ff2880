"""Akamai account data computed on demand: contracts, products, monthly periods and stats.

Values follow the seed document's structure. With ``akamai_oddities`` the first contract's
first product (the seed's Web Application Accelerator) shows the seed's quirks: its second
month arrives as two periods (1st-15th and 16th-end), and its first month, once finalized,
carries dates three years off its month (the seed's 2020-07 period says 2017-07-01..31).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from reconciler.domain import Month, Provider
from reconciler.sandbox.catalog import AKAMAI_PRODUCTS, SEED_CONTRACT_ID, AkamaiProduct, AkamaiStat
from reconciler.sandbox.events import LineRef, SandboxEvent, accrued, effects, peak
from reconciler.sandbox.scenario import Scenario, det_id, det_int

COLLECTING = "COLLECTING_DATA"
FINALIZED = "DATA_FINALIZED"
_ODD_YEARS = 3


@dataclass(frozen=True, slots=True)
class AkamaiContract:
    contract_id: str
    products: tuple[AkamaiProduct, ...]

    def product(self, product_id: str) -> AkamaiProduct | None:
        return next((p for p in self.products if p.product_id == product_id), None)


class AkamaiData:
    """Deterministic Akamai billing data for one scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.contracts: dict[str, AkamaiContract] = {}
        count = scenario.akamai_products_per_contract
        for index in range(scenario.akamai_contracts):
            contract_id = SEED_CONTRACT_ID if index == 0 else self._contract_id(index)
            products = tuple(
                _trim(AKAMAI_PRODUCTS[(index + k) % len(AKAMAI_PRODUCTS)], scenario)
                for k in range(count)
            )
            self.contracts[contract_id] = AkamaiContract(contract_id, products)

    def _contract_id(self, index: int) -> str:
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return "C-" + det_id(self.scenario.seed, "contract", index, length=7, alphabet=alphabet)

    def _is_odd(self, contract_id: str, product: AkamaiProduct) -> bool:
        first = next(iter(self.contracts.values()))
        return (
            self.scenario.akamai_oddities
            and contract_id == first.contract_id
            and product is first.products[0]
        )

    def _spans(
        self, contract_id: str, product: AkamaiProduct, month: Month
    ) -> list[tuple[date, date]]:
        odd_month = self._is_odd(contract_id, product) and month == self.scenario.first_month + 1
        if self.scenario.akamai_split_periods or odd_month:
            middle = month.first_day.replace(day=15)
            return [(month.first_day, middle), (middle.replace(day=16), month.last_day)]
        return [(month.first_day, month.last_day)]

    def _daily(
        self, contract_id: str, product: AkamaiProduct, stat: AkamaiStat, region: str, month: Month
    ) -> int:
        parts = (contract_id, product.product_id, stat.stat_type, region, month)
        return det_int(
            self.scenario.seed, "akamai", *parts, low=stat.daily_min, high=stat.daily_max
        )

    def periods(
        self,
        contract_id: str,
        product: AkamaiProduct,
        month: Month,
        as_of: date,
        events: Sequence[SandboxEvent],
    ) -> list[dict[str, Any]]:
        """The usage periods of one product and month as served on ``as_of``."""
        finalized = self.scenario.is_finalized(month, as_of)
        out: list[dict[str, Any]] = []
        for region in product.regions:
            period_ref = LineRef(
                Provider.AKAMAI, product.product_id, None, month, region, contract=contract_id
            )
            period_fx = effects(events, period_ref, as_of)
            status = (
                FINALIZED if finalized and not (period_fx and period_fx.reopened) else COLLECTING
            )
            for first, last in self._spans(contract_id, product, month):
                if as_of < first:
                    continue
                stats = []
                for stat in product.stats:
                    ref = LineRef(
                        Provider.AKAMAI,
                        product.product_id,
                        stat.stat_type,
                        month,
                        region,
                        contract=contract_id,
                    )
                    fx = effects(events, ref, as_of)
                    if fx is not None and fx.hidden:
                        continue
                    daily = self._daily(contract_id, product, stat, region, month)
                    measure = peak if stat.peak else accrued
                    amount = measure(daily, first, last, as_of, fx.spikes if fx else ())
                    value = Decimal(amount).scaleb(-stat.decimals)
                    if fx is not None:
                        value *= fx.factor
                    entry: dict[str, Any] = {}
                    if stat.billable is not None:
                        entry["isBillable"] = stat.billable
                    entry["statType"] = stat.stat_type
                    entry["unit"] = fx.unit if fx is not None and fx.unit else stat.unit
                    entry["value"] = value
                    stats.append(entry)
                if not stats:
                    continue
                shown_first, shown_last = first, last
                if (
                    status == FINALIZED
                    and self._is_odd(contract_id, product)
                    and month == self.scenario.first_month
                ):
                    shown_first = first.replace(year=first.year - _ODD_YEARS)
                    shown_last = last.replace(year=last.year - _ODD_YEARS, day=1)
                    shown_last = Month.of(shown_last).last_day
                out.append(
                    {
                        "dataStatus": status,
                        "end": shown_last.isoformat(),
                        "month": str(month),
                        "region": region,
                        "start": shown_first.isoformat(),
                        "stats": stats,
                    }
                )
        return out

    def months_in(self, start: Month, end_exclusive: Month, today: date) -> list[Month]:
        visible = set(self.scenario.visible_months(today))
        if end_exclusive <= start:
            return []
        return [m for m in start.range_to(end_exclusive - 1) if m in visible]

    def marketing_products(self, contract: AkamaiContract) -> list[dict[str, str]]:
        return [
            {"marketingProductId": p.marketing_id, "marketingProductName": p.name}
            for p in contract.products
        ]


def _trim(product: AkamaiProduct, scenario: Scenario) -> AkamaiProduct:
    stats = product.stats[: scenario.akamai_stats_per_product]
    return AkamaiProduct(
        product.product_id, product.name, product.marketing_id, product.regions, stats
    )
