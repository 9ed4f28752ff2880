"""JSON output with exact decimals: a :class:`~decimal.Decimal` becomes a JSON number token.

The standard encoder knows nothing of Decimal and would need a float to write a number. Here
every Decimal is first written as a marked string, then the marks are removed, so the number
appears on the wire exactly, in its canonical form (``12.340`` is written ``12.34``, never
with an exponent). A NaN Decimal becomes the
bare ``NaN`` token, which is what the sandbox's NaN fault needs to send.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from reconciler.domain import canonical_decimal

_MARK = "\x00"
_MARKED = re.compile(r'"\\u0000([^"]*)"')


def _default(value: object) -> str:
    if isinstance(value, Decimal):
        if value.is_nan():
            return _MARK + "NaN"
        if value.is_infinite():
            return _MARK + ("Infinity" if value > 0 else "-Infinity")
        return _MARK + canonical_decimal(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(payload: Any) -> str:
    """Compact JSON text of ``payload``; dict order is kept, so equal input gives equal bytes."""
    text = json.dumps(payload, default=_default, separators=(",", ":"))
    return _MARKED.sub(r"\1", text)


def dump_bytes(payload: Any) -> bytes:
    return dumps(payload).encode()
