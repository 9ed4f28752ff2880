"""What the sandbox's accounts are made of: Fastly usage types and Akamai products with stats.

Names, units and id formats follow the providers' documentation (see PROVIDERS.md): Fastly
bandwidth is billed in GB with the raw measure in bytes, requests in units of 10,000 with the
raw measure in requests; Akamai's "Total MB" stat really does come with unit "GB".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

BYTES_PER_GB = 1 << 30
REQUESTS_PER_UNIT = 10_000


@dataclass(frozen=True, slots=True)
class FastlyUsageType:
    """One billable metric of a Fastly product, with its invoice classification and price."""

    product_id: str
    name: str
    region: str
    unit: str
    measure: str  # "bandwidth" or "requests": the invoice line's usage_type
    rate_usd: Decimal
    product_group: str
    product_line: str

    @property
    def raw_per_unit(self) -> int:
        return BYTES_PER_GB if self.measure == "bandwidth" else REQUESTS_PER_UNIT


def _cdn(region: str, bandwidth_rate: str, requests_rate: str) -> tuple[FastlyUsageType, ...]:
    return (
        FastlyUsageType(
            "cdn_usage",
            f"{region} Bandwidth",
            region,
            "GB",
            "bandwidth",
            Decimal(bandwidth_rate),
            "Full-Site Delivery",
            "Network Services",
        ),
        FastlyUsageType(
            "cdn_usage",
            f"{region} Requests",
            region,
            "unit",
            "requests",
            Decimal(requests_rate),
            "Full-Site Delivery",
            "Network Services",
        ),
    )


FASTLY_USAGE_TYPES: tuple[FastlyUsageType, ...] = (
    *_cdn("North America", "0.12", "0.0075"),
    *_cdn("Europe", "0.12", "0.0090"),
    FastlyUsageType(
        "image_optimizer",
        "Image Optimizer Requests",
        "Global",
        "unit",
        "requests",
        Decimal("0.0150"),
        "Image Optimization",
        "Network Services",
    ),
    FastlyUsageType(
        "websockets",
        "WebSockets Bandwidth",
        "Global",
        "gb",
        "bandwidth",
        Decimal("0.10"),
        "WebSockets",
        "Network Services",
    ),
    *_cdn("Asia Pacific", "0.19", "0.0090"),
    *_cdn("Australia", "0.19", "0.0090"),
    *_cdn("South America", "0.28", "0.0160"),
    *_cdn("Africa", "0.28", "0.0160"),
    *_cdn("India", "0.28", "0.0160"),
    *_cdn("South Korea", "0.19", "0.0090"),
    FastlyUsageType(
        "compute",
        "Compute Requests",
        "Global",
        "unit",
        "requests",
        Decimal("0.0500"),
        "Compute",
        "Compute",
    ),
    FastlyUsageType(
        "ngwaf",
        "Next-Gen WAF Requests",
        "Global",
        "unit",
        "requests",
        Decimal("0.0200"),
        "Next-Gen WAF",
        "Security",
    ),
)

SERVICE_NAMES: tuple[str, ...] = (
    "www.example.com",
    "api.example.com",
    "static.example.com",
    "images.example.com",
    "shop.example.com",
    "video.example.com",
    "docs.example.com",
    "ws.example.com",
)


@dataclass(frozen=True, slots=True)
class AkamaiStat:
    """One stat of an Akamai product; values are integers in units of 10**-decimals."""

    stat_type: str
    unit: str
    billable: bool | None  # None: the isBillable key is left out, as the real API sometimes does
    daily_min: int
    daily_max: int
    decimals: int = 3
    peak: bool = False  # a peak measure does not accumulate over the month


@dataclass(frozen=True, slots=True)
class AkamaiProduct:
    product_id: str
    name: str
    marketing_id: str
    regions: tuple[str, ...]
    stats: tuple[AkamaiStat, ...]


GLOBAL = ("GLOBAL",)
GEO = ("Americas", "EMEA", "Asia Pacific")
TOTAL_MB = AkamaiStat("Total MB", "GB", True, 5_000, 500_000)
P95 = AkamaiStat("95/5 Mbps", "95/5 Mbps", False, 10, 2_000, decimals=1, peak=True)
HITS = AkamaiStat("Total Hits", "Total Hits", False, 10_000, 5_000_000, decimals=0)
PEAK = AkamaiStat("Peak Mbps", "Peak Mbps", False, 1, 2_000, decimals=0, peak=True)
DELIVERY = (TOTAL_MB, P95, HITS, PEAK)

AKAMAI_PRODUCTS: tuple[AkamaiProduct, ...] = (
    AkamaiProduct("1-ABC012", "Web Application Accelerator", "B-3-96NY56", GLOBAL, DELIVERY),
    AkamaiProduct("1-7KLGH", "Adaptive Media Delivery", "B-4-1O78TS", GEO, DELIVERY),
    AkamaiProduct(
        "1-5BYUG1",
        "NetStorage",
        "B-3-A5ME5",
        GLOBAL,
        (
            AkamaiStat("Storage GB", "GB", True, 100_000, 900_000, peak=True),
            AkamaiStat("Total Hits", "Total Hits", None, 1_000, 400_000, decimals=0),
            AkamaiStat("Total MB", "GB", False, 1_000, 90_000),
            PEAK,
        ),
    ),
    AkamaiProduct("1-6JHGX", "Ion Standard", "M-LC-160619", GLOBAL, DELIVERY),
    AkamaiProduct("1-C6RW9", "Download Delivery", "M-LC-107516", GEO, DELIVERY),
    AkamaiProduct(
        "M-LC-108",
        "Kona Site Defender",
        "M-LC-108",
        GLOBAL,
        (
            AkamaiStat("Total Hits", "Total Hits", True, 10_000, 5_000_000, decimals=0),
            TOTAL_MB,
            AkamaiStat("WAF Rules Hits", "Hits", False, 100, 50_000, decimals=0),
            PEAK,
        ),
    ),
    AkamaiProduct(
        "1-4BDTQ3",
        "Image and Video Manager",
        "M-LC-143260",
        GLOBAL,
        (
            AkamaiStat("Images", "Images", True, 1_000, 900_000, decimals=0),
            TOTAL_MB,
            HITS,
            PEAK,
        ),
    ),
    AkamaiProduct(
        "1-B3D94",
        "Bot Manager Premier",
        "M-LC-159580",
        GLOBAL,
        (
            AkamaiStat("Total Hits", "Total Hits", True, 10_000, 3_000_000, decimals=0),
            TOTAL_MB,
            P95,
            PEAK,
        ),
    ),
)

SEED_CONTRACT_ID = "K-0N7RAK7"
SEED_ACCOUNT_ID = "A-CCT7890"
SEED_CUSTOMER_ID = "x4xCwxxJxGCx123Rx5xTx"
