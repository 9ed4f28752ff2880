"""One typed Settings object built from a TOML file and ``RECONCILER_`` environment overrides.

Nobody else reads configuration files or the environment for configuration. Secrets never
live in the TOML: a source names where its secret is (an environment variable, a file, or a
systemd credential) and :mod:`reconciler.secrets` resolves it when it is needed.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from reconciler.cost_settings import (
    CommitmentSettings,
    CreditSettings,
    MoneyValue,
    RateSettings,
    non_negative_decimal,
    rate_card_problems,
)
from reconciler.domain import ChangeKind, Month, Severity
from reconciler.errors import ConfigError
from reconciler.reconcile.measures import MeasureKind
from reconciler.secrets import SecretRef
from reconciler.settings_base import StrictSettings
from reconciler.team_settings import (
    ShowbackSettings,
    TeamSettings,
    known_team,
    team_budget_problems,
    team_problems,
)

CONFIG_ENV = "RECONCILER_CONFIG"
SYSTEM_CONFIG = Path("/etc/reconciler/reconciler.toml")
LOCAL_CONFIG = Path("reconciler.toml")
DEFAULT_STATE_DIR = Path(".reconciler")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LONGEST_DURATION_S = 100 * 365 * 86400  # beyond any range below; keeps timedelta finite
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r} (expected e.g. '90s', '30m', '6h', '1d')")
    if not math.isfinite(seconds) or seconds > _LONGEST_DURATION_S:
        shown = repr(value) if isinstance(value, str) else str(value)
        raise ValueError(f"duration {shown} is not a usable length of time")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def parse_quantity(value: Any) -> Decimal:
    return non_negative_decimal(value, "quantity")


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
Quantity = Annotated[Decimal, BeforeValidator(parse_quantity)]


def parse_lag(value: Any) -> timedelta:
    """A duration that may be zero (``"0s"``, ``0``): how late a provider's data arrives."""
    if value in (0, "0", "0s", "0m", "0h", "0d") and not isinstance(value, bool):
        return timedelta(0)
    return parse_duration(value)


LagDuration = Annotated[
    timedelta,
    BeforeValidator(parse_lag),
    PlainSerializer(lambda v: format_duration(v) if v else "0s", return_type=str, when_used="json"),
]


def _between(low: timedelta, high: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(
                f"must be between {format_duration(low)} and {format_duration(high)}, "
                f"got {format_duration(value)}"
            )
        return value

    return AfterValidator(check)


# The documented range of every duration (README, "Configuration"): a value outside it would
# stop the daemon (an overflowing timer), never fire, or spin a core.
PullEvery = Annotated[Duration, _between(timedelta(seconds=1), timedelta(days=90))]
MaxAge = Annotated[Duration, _between(timedelta(seconds=1), timedelta(days=365))]
ReportEvery = Annotated[Duration, _between(timedelta(seconds=1), timedelta(days=90))]
HousekeepingEvery = Annotated[Duration, _between(timedelta(minutes=1), timedelta(days=7))]


DEFAULT_STATEMENT_TIMEOUT_S = 1800.0


def seconds(default: float, low: float, high: float) -> Any:
    """A number of seconds in [low, high] (finite; ``inf`` and ``nan`` refused)."""
    return Field(default=default, ge=low, le=high, allow_inf_nan=False)


class Tolerance(BaseModel):
    """How far a total may be from a declared quantity: a percent or an absolute amount."""

    model_config = ConfigDict(frozen=True)

    percent: Decimal | None = None
    absolute: Decimal | None = None

    @classmethod
    def parse(cls, value: Any) -> Tolerance:
        if isinstance(value, Tolerance):
            return value
        text = str(value).strip()
        if text.endswith("%"):
            return cls(percent=parse_quantity(text[:-1]))
        return cls(absolute=parse_quantity(text))

    def allowance(self, reference: Decimal) -> Decimal:
        if self.percent is not None:
            return abs(reference) * self.percent / 100
        return self.absolute or Decimal(0)

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.absolute or 0)


# How far a finalized value may be from the month's last collecting one for the finalization
# to be routine ("1%", or an absolute quantity such as "0.5").
FinalizeTolerance = Annotated[
    Tolerance,
    BeforeValidator(Tolerance.parse),
    PlainSerializer(str, return_type=str, when_used="json"),
]
DEFAULT_FINALIZE_TOLERANCE = Tolerance(percent=Decimal(1))


class StateSettings(StrictSettings):
    database_url: str = ""
    directory: Path | None = None
    # PostgreSQL: the server cancels any one statement that runs longer (a hung or stopped
    # client's query, a plan gone wrong) instead of letting it hold its locks for hours.
    statement_timeout_s: float = seconds(DEFAULT_STATEMENT_TIMEOUT_S, 1, 86400)


class _SourceBase(StrictSettings):
    name: str
    base_url: str | None = None
    lookback_months: int = Field(default=3, ge=1, le=18)
    pull_every: PullEvery = timedelta(hours=6)
    max_age: MaxAge | None = None
    max_concurrency: int = Field(default=8, ge=1, le=64)
    timeout_s: float = seconds(60.0, 0.1, 3600)
    max_retries: int = Field(default=5, ge=0, le=20)
    retry_cap_s: float = seconds(60.0, 0.01, 3600)
    min_impact: MoneyValue | None = None
    # How late usage reaches the API: a pull at t covers the days through (t - data_lag).
    data_lag: LagDuration = timedelta(days=1)

    @field_validator("data_lag")
    @classmethod
    def _lag_range(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=14):
            raise ValueError(f"data_lag must be at most 14d, got {format_duration(value)}")
        return value

    # The whole pull's deadline, whatever its requests and retries do.
    pull_timeout_s: float = seconds(1800.0, 0.1, 86400)
    finalize_tolerance: FinalizeTolerance | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"invalid source name {value!r} (letters, digits, '-', '_', '.'; at most 64)"
            )
        return value

    @property
    def allowed_age(self) -> timedelta:
        """How old the last successful pull may be before the daemon reports not ready."""
        return self.max_age or self.pull_every * 3


class FastlySourceSettings(_SourceBase):
    provider: Literal["fastly"]
    token_env: str = "FASTLY_API_TOKEN"
    token_file: Path | None = None
    token_credential: str = "fastly-token"
    services: bool = True
    product_id: str | None = None
    usage_type_name: str | None = None
    invoices: bool = True
    finalize_after_days: int = Field(default=5, ge=0, le=60)

    def token_ref(self, index: int) -> SecretRef:
        return SecretRef(
            what=f"Fastly API token for source '{self.name}'",
            key_path=f"sources[{index}].token_env",
            env=self.token_env,
            file=self.token_file,
            credential=self.token_credential,
        )

    @model_validator(mode="after")
    def _filter_pair(self) -> FastlySourceSettings:
        if (self.product_id is None) != (self.usage_type_name is None):
            raise ValueError("product_id and usage_type_name must be set together")
        return self


class AkamaiSourceSettings(_SourceBase):
    provider: Literal["akamai"]
    edgerc: Path = Path("~/.edgerc")
    section: str = "default"
    edgerc_credential: str = "akamai-edgerc"
    contracts: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)
    account_switch_key: str | None = None
    # Also read each product's per-CP-code monthly summary: one line per CP code (as the
    # line's service) beside the product's, so [[teams]] can own CP codes.
    cp_codes: bool = False
    # Also read each listed reporting group's monthly summary of every product pulled: the
    # group's part of the contract product's usage, so [[teams]] can own reporting groups.
    reporting_groups: list[str] = Field(default_factory=list)
    # The Invoicing API v3 (invoice totals for the audit), signed with this .edgerc section.
    invoices: bool = False
    invoicing_section: str | None = None

    @field_validator("reporting_groups", mode="before")
    @classmethod
    def _reporting_group_ids(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        ids: list[str] = []
        for item in value:
            text = str(item) if type(item) is int else item
            if type(text) is not str or not text.isdigit() or text.startswith("0"):
                raise ValueError(
                    f'reporting group ids are positive integers like "12345" (got {item!r})'
                )
            if text in ids:
                raise ValueError(f"reporting group {text} is listed twice")
            ids.append(text)
        return ids

    @field_validator("reporting_groups")
    @classmethod
    def _one_breakdown(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # A reporting group is a set of CP codes: both breakdowns share out the same contract
        # product usage, so a team's usage, quantity expectations and allocation weights
        # would count it twice.
        if value and info.data.get("cp_codes") is True:
            raise ValueError(
                "a source with cp_codes = true takes no reporting_groups (both break down the "
                "same contract product usage, which would be counted twice): choose one "
                "breakdown per source, CP codes being the finer"
            )
        return value

    def edgerc_ref(self, index: int) -> SecretRef:
        return SecretRef(
            what=f"Akamai .edgerc for source '{self.name}'",
            key_path=f"sources[{index}].edgerc",
            file=self.edgerc,
            credential=self.edgerc_credential,
        )


SourceSettings = Annotated[
    FastlySourceSettings | AkamaiSourceSettings, Field(discriminator="provider")
]


class ExpectationSettings(StrictSettings):
    name: str = ""
    source: str = "*"
    product: str = "*"
    usage_type: str = "*"
    region: str = "*"
    service: str = "*"
    per_service: bool = False
    monthly_max: Quantity | None = None
    monthly_min: Quantity | None = None
    monthly_quantity: Quantity | None = None
    tolerance: Annotated[Tolerance, PlainSerializer(str, return_type=str, when_used="json")] = (
        Tolerance(percent=Decimal(0))
    )
    unit: str | None = None
    invoices: dict[str, Quantity] = Field(default_factory=dict)
    monthly_budget: MoneyValue | None = None
    severity: Severity | None = None
    # The lines a [[teams]] entry owns; a team budget is the team's share of the bill.
    team: str | None = None

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value: Any) -> Tolerance:
        return Tolerance.parse(value)

    @field_validator("invoices")
    @classmethod
    def _invoice_months(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for month in value:
            Month.parse(month)
        return value

    @model_validator(mode="after")
    def _has_a_limit(self) -> ExpectationSettings:
        limits = (self.monthly_max, self.monthly_min, self.monthly_quantity, self.unit)
        if all(v is None for v in limits) and not self.invoices and self.monthly_budget is None:
            raise ValueError(
                "declares nothing: set monthly_max, monthly_min, monthly_quantity, unit, "
                "invoices or monthly_budget"
            )
        if (
            self.monthly_min is not None
            and self.monthly_max is not None
            and self.monthly_min > self.monthly_max
        ):
            raise ValueError("monthly_min is greater than monthly_max")
        narrowed = [
            name
            for name in ("product", "usage_type", "region", "service")
            if getattr(self, name) != "*"
        ]
        if self.team is not None and self.monthly_budget is not None and narrowed:
            raise ValueError(
                "a team budget is the team's share of the bill: it takes no "
                f"{', '.join(narrowed)} (declare a team expectation without a budget for those)"
            )
        return self

    @property
    def label(self) -> str:
        """The name, else every matcher field that narrows what the expectation covers."""
        if self.name:
            return self.name
        parts = [p for p in (self.source, self.product, self.usage_type) if p != "*"]
        label = "/".join(parts) or ("" if self.team is not None else "all usage")
        if self.region != "*":
            label += f" [{self.region}]"
        if self.service != "*":
            label += f" service {self.service}"
        if self.per_service:
            label += " per service"
        if self.team is not None:
            label += f" team {self.team}"
        return label.lstrip()


class CostSettings(StrictSettings):
    """How the invoice audit compares amounts (beyond the invoice's own rounding)."""

    invoice_tolerance: Annotated[
        Tolerance, PlainSerializer(str, return_type=str, when_used="json")
    ] = Tolerance(absolute=Decimal(0))
    rate_tolerance: Annotated[
        Tolerance, PlainSerializer(str, return_type=str, when_used="json")
    ] = Tolerance(percent=Decimal("0.5"))

    @field_validator("invoice_tolerance", "rate_tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value: Any) -> Tolerance:
        return Tolerance.parse(value)


class MeasureSettings(StrictSettings):
    """A ``[[measures]]`` entry: the measure kind of the stats it matches (globs)."""

    provider: str = "*"
    product: str = "*"
    usage_type: str = "*"
    unit: str = "*"
    kind: MeasureKind


class SlackRouteSettings(StrictSettings):
    source: str
    webhook_url_env: str | None = None
    webhook_url_file: Path | None = None
    webhook_url_credential: str | None = None
    min_severity: Severity | None = None
    min_impact: MoneyValue | None = None

    def webhook_ref(self, index: int) -> SecretRef | None:
        if not (self.webhook_url_env or self.webhook_url_file or self.webhook_url_credential):
            return None
        return SecretRef(
            what=f"Slack webhook URL for source '{self.source}'",
            key_path=f"alerts.slack.routes[{index}]",
            env=self.webhook_url_env,
            file=self.webhook_url_file,
            credential=self.webhook_url_credential,
        )


class SlackTeamRouteSettings(StrictSettings):
    """One ``[[alerts.slack.teams]]``: a team's own Slack webhook and thresholds; it hears
    the items of that team's lines (see ``[[teams]]``), from every source."""

    team: str
    webhook_url_env: str | None = None
    webhook_url_file: Path | None = None
    webhook_url_credential: str | None = None
    min_severity: Severity | None = None
    min_impact: MoneyValue | None = None

    @model_validator(mode="after")
    def _has_webhook(self) -> SlackTeamRouteSettings:
        if not (self.webhook_url_env or self.webhook_url_file or self.webhook_url_credential):
            raise ValueError("set webhook_url_env, webhook_url_file or webhook_url_credential")
        return self

    def webhook_ref(self, index: int) -> SecretRef:
        return SecretRef(
            what=f"Slack webhook URL for team '{self.team}'",
            key_path=f"alerts.slack.teams[{index}]",
            env=self.webhook_url_env,
            file=self.webhook_url_file,
            credential=self.webhook_url_credential,
        )


class SlackSettings(StrictSettings):
    enabled: bool = True  # false: only [[alerts.channels]] get alerts
    webhook_url_env: str = "SLACK_WEBHOOK_URL"
    webhook_url_file: Path | None = None
    webhook_url_credential: str = "slack-webhook-url"
    min_severity: Severity = Severity.WARNING
    report_link_base: str | None = None
    max_items: int = Field(default=20, ge=1, le=45)
    routes: list[SlackRouteSettings] = Field(default_factory=list)
    teams: list[SlackTeamRouteSettings] = Field(default_factory=list)

    def webhook_ref(self) -> SecretRef:
        return SecretRef(
            what="Slack webhook URL",
            key_path="alerts.slack.webhook_url_env",
            env=self.webhook_url_env,
            file=self.webhook_url_file,
            credential=self.webhook_url_credential,
        )


ChannelType = Literal["webhook", "pagerduty", "teams", "email"]
SmtpSecurity = Literal["starttls", "tls", "none"]
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class ChannelSettings(StrictSettings):
    """One ``[[alerts.channels]]``: a generic signed webhook, PagerDuty, Teams or email.

    ``url_*`` locate the endpoint URL (webhook, Teams; PagerDuty's is public and set by
    ``events_url``), ``secret_*`` the signing secret (webhook), the routing key (PagerDuty)
    or the SMTP password (email), like every other secret: a file, a systemd credential or
    an environment variable.
    """

    name: str
    type: ChannelType
    min_severity: Severity | None = None  # default: warning (PagerDuty: critical)
    url_env: str | None = None
    url_file: Path | None = None
    url_credential: str | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    secret_credential: str | None = None
    events_url: str = PAGERDUTY_EVENTS_URL
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: SmtpSecurity = "starttls"
    smtp_username: str | None = None
    smtp_ca_file: Path | None = None  # CA bundle for a private relay's certificate
    mail_from: str | None = None
    mail_to: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"invalid channel name {value!r} (letters, digits, '-', '_', '.')")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ChannelSettings:
        has_url = bool(self.url_env or self.url_file or self.url_credential)
        has_secret = bool(self.secret_env or self.secret_file or self.secret_credential)
        if self.type in ("webhook", "teams") and not has_url:
            raise ValueError(f"a {self.type} channel needs url_env, url_file or url_credential")
        if self.type in ("webhook", "pagerduty") and not has_secret:
            what = "signing secret" if self.type == "webhook" else "routing key"
            raise ValueError(f"needs its {what}: secret_env, secret_file or secret_credential")
        if self.type == "email" and not (self.smtp_host and self.mail_from and self.mail_to):
            raise ValueError("an email channel needs smtp_host, mail_from and mail_to")
        return self

    @property
    def default_severity(self) -> Severity:
        if self.min_severity is not None:
            return self.min_severity
        return Severity.CRITICAL if self.type == "pagerduty" else Severity.WARNING

    def url_ref(self, index: int) -> SecretRef:
        return SecretRef(
            what=f"URL of alert channel '{self.name}'",
            key_path=f"alerts.channels[{index}].url_env",
            env=self.url_env,
            file=self.url_file,
            credential=self.url_credential,
        )

    def secret_ref(self, index: int) -> SecretRef | None:
        if not (self.secret_env or self.secret_file or self.secret_credential):
            return None
        what = {"webhook": "signing secret", "pagerduty": "routing key", "email": "password"}
        return SecretRef(
            what=f"{what.get(self.type, 'secret')} of alert channel '{self.name}'",
            key_path=f"alerts.channels[{index}].secret_env",
            env=self.secret_env,
            file=self.secret_file,
            credential=self.secret_credential,
        )


class AlertRouteSettings(StrictSettings):
    """One ``[[alerts.routes]]``: which channels get which sources' items, from which
    severity and (once items carry a money impact) from which impact."""

    channels: list[str] = Field(min_length=1)
    source: str = "*"  # a name or a glob
    team: str | None = None  # only the items of this team (see [[teams]])
    min_severity: Severity | None = None  # default: each channel's own
    min_impact: MoneyValue | None = None  # ignored for an item without a money impact


class AlertSettings(StrictSettings):
    slack: SlackSettings = SlackSettings()
    channels: list[ChannelSettings] = Field(default_factory=list)
    routes: list[AlertRouteSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_channels(self) -> AlertSettings:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("alerts.channels: two channels have the same name")
        for index, route in enumerate(self.routes):
            if unknown := sorted(set(route.channels) - set(names)):
                raise ValueError(f"alerts.routes[{index}]: unknown channels {unknown}")
        return self


class ForecastSettings(StrictSettings):
    """How collecting months are forecast to month end, and when an overage is raised again."""

    method: Literal["trailing", "run_rate"] = "trailing"
    window_days: int = Field(default=14, ge=2, le=28)
    min_days: int = Field(default=5, ge=1, le=28)
    band_z: Decimal = Field(default=Decimal("1.645"), gt=0, le=5)
    burst_factor: Decimal = Field(default=Decimal(3), gt=1, le=100)
    escalation_percent: Decimal = Field(default=Decimal(20), gt=0, le=1000)
    escalation_amount: Quantity | None = None
    escalation_money: MoneyValue | None = None


ReportFormat = Literal["html", "md", "json", "focus-csv"]
_DEFAULT_FORMATS: list[ReportFormat] = ["html", "json"]


class ReportSettings(StrictSettings):
    directory: Path | None = None
    every: ReportEvery = timedelta(days=1)
    keep_days: int = Field(default=30, ge=1, le=3650)
    formats: list[ReportFormat] = Field(default_factory=lambda: _DEFAULT_FORMATS.copy())
    months: int = Field(default=6, ge=1, le=18)


class DaemonSettings(StrictSettings):
    listen: str = "127.0.0.1:9109"
    jitter_s: float = seconds(30.0, 0, 3600)
    first_pull_delay_s: float = seconds(5.0, 0, 86400)
    alert_every_s: float = seconds(5.0, 0.1, 3600)
    housekeeping_every: HousekeepingEvery = timedelta(hours=1)
    keep_runs_days: int = Field(default=400, ge=1, le=3650)
    lease_ttl_s: float = seconds(600.0, 1, 86400)
    stop_timeout_s: float = seconds(60.0, 1, 3600)
    max_concurrent_pulls: int = Field(default=16, ge=1, le=1024)
    metrics_services: int = Field(default=0, ge=0, le=1000)
    instance: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid listen address {value!r} (expected HOST:PORT or '')")
        return value


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override


def merge_list_entries(env: dict[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``env`` overrides with ``{"sources": {"0": {...}}}`` merged into ``data``'s list entry 0.

    pydantic-settings reads ``RECONCILER_SOURCES__0__TIMEOUT_S`` as a mapping keyed by the
    index; the README promises it overrides that key of the first ``[[sources]]`` table.
    """
    merged = dict(env)
    for key, value in env.items():
        entries = data.get(key)
        if not isinstance(value, dict) or not isinstance(entries, list):
            continue
        if not value or not all(isinstance(k, str) and k.isdigit() for k in value):
            continue
        updated = list(entries)
        for index, override in value.items():
            position = int(index)
            if position >= len(updated):
                raise ConfigError(
                    [
                        f"{key}[{position}] (from the environment, RECONCILER_{key.upper()}__"
                        f"{position}__...): there are only {len(updated)} {key} entries"
                    ]
                )
            updated[position] = _merge(updated[position], override)
        merged[key] = updated
    return merged


class _ListEntryEnvSource(PydanticBaseSettingsSource):
    """The environment source, with overrides of list entries merged into the file's lists."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        env: PydanticBaseSettingsSource,
        init: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._env, self._init = env, init

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._env.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return merge_list_entries(self._env(), self._init())


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="RECONCILER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state: StateSettings = StateSettings()
    sources: list[SourceSettings] = Field(default_factory=list)
    expectations: list[ExpectationSettings] = Field(default_factory=list)
    rates: list[RateSettings] = Field(default_factory=list)
    commitments: list[CommitmentSettings] = Field(default_factory=list)
    credits: list[CreditSettings] = Field(default_factory=list)
    teams: list[TeamSettings] = Field(default_factory=list)
    showback: ShowbackSettings = ShowbackSettings()
    cost: CostSettings = CostSettings()
    measures: list[MeasureSettings] = Field(default_factory=list)
    severities: dict[ChangeKind, Severity] = Field(default_factory=dict)
    finalize_tolerance: FinalizeTolerance = DEFAULT_FINALIZE_TOLERANCE
    alerts: AlertSettings = AlertSettings()
    reports: ReportSettings = ReportSettings()
    daemon: DaemonSettings = DaemonSettings()
    forecast: ForecastSettings = ForecastSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file; no dotenv or secrets-dir magic. An override of a
        # list entry (RECONCILER_SOURCES__0__TIMEOUT_S) is merged into that entry.
        return (_ListEntryEnvSource(settings_cls, env_settings, init_settings), init_settings)

    @model_validator(mode="after")
    def _unique_sources(self) -> Settings:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate source names: {', '.join(duplicates)}")
        problems = rate_card_problems(self.rates) + team_problems(self.teams, self.showback)
        problems += team_budget_problems(
            self.expectations, [s.name for s in self.sources], self.rates, self.commitments
        )
        problems += [
            f"expectations[{index}].team: no team named {e.team!r}"
            for index, e in enumerate(self.expectations)
            if e.team is not None and not known_team(self.teams, e.team)
        ]
        problems += [
            f"alerts.routes[{index}].team: no team named {r.team!r}"
            for index, r in enumerate(self.alerts.routes)
            if r.team is not None and not known_team(self.teams, r.team)
        ]
        problems += [
            f"alerts.slack.teams[{index}].team: no team named {r.team!r}"
            for index, r in enumerate(self.alerts.slack.teams)
            if not known_team(self.teams, r.team)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _distinct_expectations(self) -> Settings:
        # Findings are identified by the expectation's label and matchers: two expectations
        # alike in both would raise items with one fingerprint, which cannot be stored.
        seen: dict[str, int] = {}
        for index, expectation in enumerate(self.expectations):
            label = expectation.label
            if label in seen:
                raise ValueError(
                    f"expectations {seen[label] + 1} and {index + 1} have the same label "
                    f"{label!r}: give each a distinct name (or different matchers)"
                )
            seen[label] = index
        return self

    def source_index(self, name: str) -> int:
        for index, source in enumerate(self.sources):
            if source.name == name:
                return index
        raise ConfigError([f"sources: no source named {name!r}"])

    def source(self, name: str) -> FastlySourceSettings | AkamaiSourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError([f"sources: no source named {name!r}"])

    def finalize_tolerance_for(self, name: str) -> Tolerance:
        """The source's own ``finalize_tolerance``, else the global one (default 1%)."""
        return self.source(name).finalize_tolerance or self.finalize_tolerance

    @property
    def state_directory(self) -> Path:
        if self.state.directory is not None:
            return self.state.directory.expanduser()
        systemd_dirs = os.environ.get("STATE_DIRECTORY")
        if systemd_dirs:
            return Path(systemd_dirs.split(":")[0])
        return DEFAULT_STATE_DIR

    @property
    def database_url(self) -> str:
        if self.state.database_url:
            return self.state.database_url
        return f"sqlite+aiosqlite:///{(self.state_directory / 'state.db').resolve()}"

    @property
    def reports_directory(self) -> Path:
        return (self.reports.directory or self.state_directory / "reports").expanduser()


def find_config_file(explicit: Path | None) -> Path | None:
    """``--config``, then ``$RECONCILER_CONFIG``, then ``./reconciler.toml``, then /etc."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    for candidate in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_settings(path: Path | None = None, *, search: bool = True) -> tuple[Settings, Path | None]:
    """Load and validate the configuration; raises ConfigError listing every problem."""
    config_path = find_config_file(path) if search else path
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            text = config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([f"configuration file {config_path} does not exist"]) from None
        except OSError as exc:
            raise ConfigError([f"cannot read {config_path}: {exc.strerror}"]) from exc
        try:
            data = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"not valid TOML: {exc}"], str(config_path)) from exc
    return settings_from_mapping(data, str(config_path) if config_path else None), config_path


def settings_from_mapping(data: dict[str, Any], origin: str | None = None) -> Settings:
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, data), origin) from None


def describe_errors(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        kind = error["type"]
        if kind == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag")
            problems.append(
                f"{_key_path([*loc, 'provider'])}: unknown provider {tag!r} "
                "(expected: fastly, akamai)"
            )
            continue
        if kind == "union_tag_not_found":
            problems.append(f"{_key_path([*loc, 'provider'])}: missing (expected: fastly, akamai)")
            continue
        # Drop the discriminator tag pydantic inserts into union locations.
        loc = [part for part in loc if part not in ("fastly", "akamai")]
        path = _key_path(loc)
        if kind == "extra_forbidden":
            problems.append(f"{path}: unknown key")
        elif kind == "missing":
            problems.append(f"{path}: required key is missing")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}: {message}" if path else message)
    return problems


def _key_path(loc: list[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
