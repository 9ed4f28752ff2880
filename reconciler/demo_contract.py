"""The demo's contract as code: the Fastly and Akamai rate cards and a monthly budget.

The prices are the sandbox account's list prices, except that the contract renewed on
2024-06-01 lowered North America bandwidth to 0.10 USD/GB, and the sandbox's June invoice
still bills the old 0.12: the invoice audit catches it.
"""

from __future__ import annotations

from typing import Any

from reconciler.sandbox.catalog import FASTLY_USAGE_TYPES

RENEWED_USAGE = "North America Bandwidth"
RENEWED_ON = "2024-06-01"
RENEWED_PRICE = "0.10"
MONTHLY_BUDGET = "5000 USD"


def demo_rates() -> list[dict[str, Any]]:
    return [*demo_fastly_rates(), *demo_akamai_rates()]


def demo_fastly_rates() -> list[dict[str, Any]]:
    rates: list[dict[str, Any]] = []
    for kind in FASTLY_USAGE_TYPES:
        rate = {
            "name": f"{kind.name} list price",
            "source": "fastly",
            "usage_type": kind.name,
            "currency": "USD",
            "unit": kind.unit,
            "unit_price": str(kind.rate_usd),
        }
        if kind.name == RENEWED_USAGE:
            rates.append(
                {**rate, "name": f"{kind.name} 2023 contract", "effective_to": "2024-05-31"}
            )
            rate = {**rate, "name": f"{kind.name} renewal", "effective_from": RENEWED_ON,
                    "unit_price": RENEWED_PRICE}  # fmt: skip
        rates.append(rate)
    return rates


# The Akamai contract's prices per stat type (stats the provider marks not billable cost 0).
AKAMAI_PRICES = (
    ("Total MB", "GB", "0.015"),
    ("Storage GB", "GB", "0.05"),
    ("Total Hits", "Total Hits", "0.000002"),
    ("Images", "Images", "0.0003"),
)


def demo_akamai_rates() -> list[dict[str, Any]]:
    return [
        {
            "name": f"Akamai {stat}",
            "source": "akamai",
            "usage_type": stat,
            "currency": "USD",
            "unit": unit,
            "unit_price": price,
        }
        for stat, unit, price in AKAMAI_PRICES
    ]


def demo_budget() -> dict[str, Any]:
    return {"name": "Fastly monthly budget", "source": "fastly", "monthly_budget": MONTHLY_BUDGET}


def demo_teams() -> list[dict[str, Any]]:
    """Two teams: the storefront owns its Fastly services and Akamai's Web Application
    Accelerator; media owns the image service and Adaptive Media Delivery. The static
    service and NetStorage are left to no one: they show as unallocated."""
    return [
        {
            "name": "storefront",
            "match": [
                {"source": "fastly", "service": "www.*"},
                {"source": "fastly", "service": "shop.*"},
                {"source": "fastly", "service": "api.*"},
                {"source": "akamai", "product": "Web Application Accelerator"},
            ],
        },
        {
            "name": "media",
            "match": [
                {"source": "fastly", "service": "images.*"},
                {"source": "akamai", "product": "Adaptive Media Delivery"},
            ],
        },
    ]
