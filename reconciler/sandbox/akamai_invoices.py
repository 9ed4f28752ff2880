"""Akamai Invoicing API v3: one invoice per contract and finalized month.

``GET /invoicing-api/v3/contracts/{contractId}/invoices?month=YYYY-MM`` lists the invoices of
a contract's month (``invoiceTotal`` in ``invoiceCurrency``); a month without an invoice
(still collecting, or before the scenario) is a 404. The total prices each product's billable
stats (``isBillable`` not false) at the sandbox contract's list prices, on the month value of
each stat (sum of a volume's periods, the latest for a level), as of the day the month was
finalized. An ``invoice_rate`` event for Akamai multiplies the total (a wrong rate);
``invoice_credit`` adds a credit memo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from aiohttp import web

from reconciler.domain import Month, Provider
from reconciler.reconcile.measures import PeriodValue, classify, month_value
from reconciler.sandbox.akamai_data import AkamaiContract, AkamaiData
from reconciler.sandbox.events import EventKind, SandboxEvent
from reconciler.sandbox.responses import akamai_billing_error, json_response
from reconciler.sandbox.scenario import det_int
from reconciler.sandbox.state import STATE_KEY

# The sandbox contract's prices per stat type, in USD (stats not listed are not invoiced).
LIST_PRICES = {
    "Total MB": Decimal("0.015"),
    "Storage GB": Decimal("0.05"),
    "Total Hits": Decimal("0.000002"),
    "Images": Decimal("0.0003"),
}
CURRENCY = "USD"
ROUTE = "/invoicing-api/v3/contracts/{contractId}/invoices"


def invoice_total(
    data: AkamaiData,
    contract: AkamaiContract,
    month: Month,
    as_of: date,
    events: Sequence[SandboxEvent],
) -> Decimal:
    """What the contract's month costs at the list prices, to the cent."""
    total = Decimal(0)
    for product in contract.products:
        values: dict[tuple[str, str, str], list[PeriodValue]] = {}
        for period in data.periods(contract.contract_id, product, month, as_of, events):
            for stat in period["stats"]:
                if stat.get("isBillable") is False or stat["statType"] not in LIST_PRICES:
                    continue
                key = (period["region"], stat["statType"], stat["unit"])
                start = date.fromisoformat(period["start"])
                values.setdefault(key, []).append(PeriodValue(start, stat["value"]))
        for (_, stat_type, unit), periods in values.items():
            kind = classify("akamai", stat_type, unit).kind
            total += month_value(kind, periods) * LIST_PRICES[stat_type]
    for event in events:
        if (
            event.kind is EventKind.INVOICE_RATE
            and event.active(as_of)
            and event.match.get("month", str(month)) == str(month)
        ):
            total *= event.factor
    return total.quantize(Decimal("0.01"), ROUND_HALF_EVEN)


def _invoice(
    number: int, kind: str, posted: date, total: Decimal, contract: str, account: str
) -> dict[str, Any]:
    return {
        "invoiceId": number,
        "invoiceDate": posted.isoformat(),
        "invoiceDueDate": posted.replace(day=20).isoformat(),
        "invoiceTotal": total,
        "invoiceCurrency": CURRENCY,
        "invoiceType": kind,
        "contractId": contract,
        "accountId": account,
        "files": [{"fileName": f"{number}_1.csv", "fileFormat": "CSV", "fileVersion": 1}],
    }


async def list_invoices(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    contract = state.akamai.contracts.get(request.match_info["contractId"])
    if contract is None:
        return akamai_billing_error(request, 404, "Not Found", "Contract not found")
    try:
        month = Month.parse(request.query.get("month", ""))
    except ValueError:
        return akamai_billing_error(request, 400, "Bad Request", "Field 'month' is invalid")
    scenario = state.scenario
    if month < scenario.first_month or not scenario.is_finalized(month, state.today):
        return akamai_billing_error(request, 404, "Not Found", "No invoices for this month")
    posted = scenario.finalized_on(month)
    events = state.events_for(Provider.AKAMAI)
    kept = [e for e in events if e.kind is not EventKind.DISAPPEAR]
    total = invoice_total(state.akamai, contract, month, posted, kept)
    account = scenario.akamai_account_id
    number = det_int(
        scenario.seed, "akamai-invoice", contract.contract_id, month, low=10**9, high=9 * 10**9
    )
    body = [_invoice(number, "INVOICE", posted, total, contract.contract_id, account)]
    for index, event in enumerate(events):
        if (
            event.kind is EventKind.INVOICE_CREDIT
            and event.active(posted)
            and event.match.get("month", str(month)) == str(month)
        ):
            memo = _invoice(
                number + index + 1,
                "CREDIT_MEMO",
                posted,
                -event.factor,
                contract.contract_id,
                account,
            )
            body.append(memo)
    return json_response(request, body)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, list_invoices, name="akamai.invoices", allow_head=False)
