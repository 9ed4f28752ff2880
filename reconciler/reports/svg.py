"""Small building blocks for inline SVG charts: escaping, scales, ticks and number labels.

Every piece of text that reaches an SVG goes through :func:`text`, which drops characters XML
does not allow and escapes the rest, so a chart is safe inline in HTML and valid as a
standalone ``.svg`` file. Coordinates are computed with Decimal and written with one decimal.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from reconciler.domain import EXACT_CONTEXT

FONT = "system-ui,-apple-system,Segoe UI,Roboto,Helvetica Neue,Arial,sans-serif"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ID_UNSAFE = re.compile(r"[^a-z0-9-]")
_TENTH = Decimal("0.1")
_STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
_SUFFIXES = (
    (Decimal(10) ** 12, "T"),
    (Decimal(10) ** 9, "B"),
    (Decimal(10) ** 6, "M"),
    (Decimal(10) ** 3, "k"),
)


def clip(value: str, limit: int) -> str:
    """One line of at most ``limit`` characters (whitespace collapsed), with an ellipsis."""
    line = " ".join(value.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def text(value: str, limit: int | None = None) -> str:
    """Untrusted text made safe for SVG/XML content and attribute values."""
    clean = _NOT_XML.sub("", value)
    if limit is not None:
        clean = clip(clean, limit)
    return html.escape(clean, quote=True)


def safe_id(value: str) -> str:
    """An id usable in ``id`` and ``url(#...)`` (lower-case letters, digits, dashes)."""
    return _ID_UNSAFE.sub("-", value.lower()) or "chart"


def px(value: Decimal) -> str:
    """A coordinate with one decimal (no exponent)."""
    quantized = value.quantize(_TENTH)
    rendered = format(quantized, "f")
    return rendered[:-2] if rendered.endswith(".0") else rendered


def compact(value: Decimal) -> str:
    """A short axis label: ``1.25M``, ``48.2k``, ``850``, ``0.35``."""
    magnitude = abs(value)
    suffix = ""
    with localcontext(EXACT_CONTEXT):
        for threshold, name in _SUFFIXES:
            if magnitude >= threshold:
                value, magnitude, suffix = value / threshold, magnitude / threshold, name
                break
        places = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
        rounded = value.quantize(Decimal(1).scaleb(-places))
    rendered = format(rounded, "f")
    if "." in rendered:
        rendered = rendered.rstrip("0").rstrip(".")
    return ("0" if rendered == "-0" else rendered) + suffix


def nice_step(raw: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least ``raw``."""
    if raw <= 0:
        return Decimal(1)
    base = Decimal(1).scaleb(raw.adjusted())
    for multiple in _STEPS:
        if raw <= multiple * base:
            return multiple * base
    return 10 * base


@dataclass(frozen=True, slots=True)
class Scale:
    """Maps quantities in ``[low, high]`` onto pixels from ``start`` to ``end`` (either way)."""

    low: Decimal
    high: Decimal
    start: Decimal
    end: Decimal
    ticks: tuple[Decimal, ...]

    @classmethod
    def nice(
        cls,
        values: list[Decimal],
        start: int,
        end: int,
        *,
        zero: bool = True,
        count: int = 4,
    ) -> Scale:
        """A scale over ``values`` with round ticks; from zero unless ``zero`` is false."""
        with localcontext(EXACT_CONTEXT):
            finite = [v for v in values if v.is_finite()] or [Decimal(0)]
            high = max(finite)
            low = min(finite)
            if zero:
                low = min(low, Decimal(0))
                high = max(high, Decimal(0))
            span = high - low
            if span == 0:
                span = abs(high) or Decimal(1)
                if not zero:
                    low -= span / 2
                    high += span / 2
            step = nice_step(span / count)
            first = (low / step).to_integral_value(ROUND_FLOOR) * step
            last = (high / step).to_integral_value(ROUND_CEILING) * step
            if last == first:
                last = first + step
            steps = int((last - first) / step)
            ticks = tuple(first + step * i for i in range(steps + 1))
        return cls(first, last, Decimal(start), Decimal(end), ticks)

    def __call__(self, value: Decimal) -> Decimal:
        with localcontext(EXACT_CONTEXT):
            fraction = (value - self.low) / (self.high - self.low)
            fraction = min(max(fraction, Decimal(0)), Decimal(1))
            return self.start + (self.end - self.start) * fraction
