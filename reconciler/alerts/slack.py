"""Slack Block Kit messages for plan items: pure functions, no I/O, no clock.

Every string that came from a provider or a config is escaped with :func:`slack_escape`
and every mrkdwn object is ``verbatim`` (no automatic mention or channel parsing), so a
product named ``<!channel>`` cannot ping or link anyone. Every message stays within Slack's
limits: at most 50 blocks, 150 characters per header, 3,000 per section text and a plain
``text`` fallback of at most 40,000 characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from reconciler import display
from reconciler.domain import ItemCategory, Observation, PlanItem, Severity
from reconciler.money import Money

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3_000
MAX_TEXT_CHARS = 40_000
# Items shown one per section; the rest are summarised in a final "…and N more" block.
MAX_ITEM_BLOCKS = 40
# Per-field budgets keep one item's section far below the section limit.
_LABEL_CHARS = 200
_FIELD_CHARS = 80
_MESSAGE_CHARS = 500
_QUANTITY_CHARS = 60
_FALLBACK_ITEMS = 5

_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.INFO: ":large_blue_circle:",
}
_SEVERITIES_DESC = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)

Block = dict[str, Any]


def slack_escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(escaped: str, limit: int) -> str:
    """Shorten already escaped text to ``limit`` characters without splitting an entity."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _safe(text: str, limit: int) -> str:
    """One line of untrusted text: whitespace collapsed, escaped, clipped."""
    return clip(slack_escape(" ".join(str(text).split())), limit)


def _code(text: str, limit: int = _FIELD_CHARS) -> str:
    # A backtick inside would end the code span early; show it as a quote instead.
    return "`" + _safe(text.replace("`", "'"), limit) + "`"


def _bold(escaped: str) -> str:
    # An asterisk inside would end the bold span early: leave such labels unbolded.
    return escaped if "*" in escaped else f"*{escaped}*"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _header(text: str) -> Block:
    return {"type": "header", "text": _plain(clip(text, MAX_HEADER_CHARS))}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(clip(text, MAX_SECTION_CHARS))}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(clip(text, MAX_SECTION_CHARS))]}


def safe_link(url: str | None, label: str) -> str | None:
    """A mrkdwn link to an http(s) URL from config, or None when the URL is unusable."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    target = "".join(c for c in url.strip() if c.isprintable())
    for char, code in (("|", "%7C"), (" ", "%20"), ("<", "%3C"), (">", "%3E")):
        target = target.replace(char, code)
    target = target.replace("&", "&amp;")
    if len(target) > 1_000:
        return None
    return f"<{target}|{slack_escape(label)}>"


def order_items(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Most important first: severity, then the money impact, then the size of the change;
    stable otherwise."""

    def key(item: PlanItem) -> tuple[int, Decimal, bool, Decimal]:
        delta = item.delta
        size = abs(delta) if delta is not None and delta.is_finite() else Decimal(0)
        money = abs(item.impact) if item.impact is not None else Decimal(0)
        return (-item.severity.rank, -money, delta is None, -size)

    return sorted(items, key=key)


def _observation(obs: Observation | None) -> str:
    if obs is None:
        return "—"
    return _clipped(display.amount(obs.quantity, obs.unit))


def _clipped(shown: str) -> str:
    """``number unit`` as :mod:`reconciler.display` writes it: the number clipped, the unit
    (provider text) escaped and clipped."""
    number, _, unit = shown.partition(" ")
    quantity = clip(number, _QUANTITY_CHARS)
    unit = _safe(unit, _FIELD_CHARS)
    return f"{quantity} {unit}" if unit else quantity


def _status(obs: Observation) -> str:
    return _safe(obs.status, _FIELD_CHARS)


def _transition(item: PlanItem) -> str:
    """The line's status change: ``collecting → finalized``, or its status when unchanged."""
    before, after = item.before, item.after
    if item.category is ItemCategory.FINDING:
        # A finding's "before" is the expectation: only the observed status means anything.
        return _status(after) if after is not None else ""
    if before is None:
        return f"new, {_status(after)}" if after is not None else ""
    if after is None:
        return f"gone, was {_status(before)}"
    if before.status == after.status:
        return _status(after)
    return f"{_status(before)} → {_status(after)}"


def _percent(item: PlanItem) -> Decimal | None:
    try:
        return item.percent
    except ArithmeticError:  # too many digits to quantize (a tiny "before"): leave it out
        return None


def _change(item: PlanItem) -> str:
    before, after = item.before, item.after
    if item.category is ItemCategory.FINDING:
        text = f"expected {_observation(before)} · observed {_observation(after)}"
    else:
        text = f"{_observation(before)} → {_observation(after)}"
    delta, percent = item.delta, _percent(item)
    if delta is not None and before is not None and after is not None:
        if before.unit == after.unit:
            text += f" · Δ {_clipped(display.amount(delta, after.unit, with_sign=True))}"
            if percent is not None:
                text += f" ({clip(display.percent(percent), _QUANTITY_CHARS)})"
        else:
            text += " · unit changed"
    return text


def label_of(item: PlanItem) -> str:
    """The item's line label, escaped, or a stand-in when the item names no line."""
    return _safe(item.line_label, _LABEL_CHARS) or "all lines"


def render_item(item: PlanItem) -> str:
    """The mrkdwn text of one item's section (well under the section limit)."""
    impact = _impact(item)
    lead = f"{_bold(impact)}: " if impact else ""
    lines = [
        f"{_EMOJI[item.severity]} {lead}{_bold(label_of(item))} · {item.when}",
        f"{_code(item.kind)} · {item.severity.value} · {_change(item)}",
    ]
    details = [_transition(item)]
    if item.account:
        details.append(f"account {_code(item.account)}")
    details = [d for d in details if d]
    if details:
        lines.append(" · ".join(details))
    if item.message:
        lines.append(clip(slack_escape(item.message.strip()), _MESSAGE_CHARS))
    return "\n".join(lines)


def _impact(item: PlanItem) -> str:
    """The money impact first (``+1,234.56 USD``), escaped; '' when no rate prices it."""
    if item.impact is None or not item.impact_currency:
        return ""
    return _safe(Money(item.impact, item.impact_currency).display(signed=True), _FIELD_CHARS)


def _one_line(item: PlanItem) -> str:
    impact = _impact(item)
    lead = f"{impact}: " if impact else ""
    return f"{item.severity.value.upper()} {lead}{label_of(item)} {item.when}: {_change(item)}"


def _bounded_lines(lines: Sequence[str], limit: int, more: Callable[[int], str]) -> str:
    """Join as many lines as fit in ``limit``, ending with ``more(n)`` for the n left out."""
    kept: list[str] = []
    size = 0
    reserve = len(more(len(lines))) + 1
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        if size + len(line) + 1 > limit - (0 if last else reserve):
            return "\n".join([*kept, more(len(lines) - index)])
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _counts(items: Sequence[PlanItem]) -> str:
    by_severity = Counter(item.severity for item in items)
    by_kind = Counter(item.kind for item in items)
    noun = "item" if len(items) == 1 else "items"
    severities = " · ".join(
        f"{_EMOJI[s]} {by_severity[s]} {s.value}" for s in _SEVERITIES_DESC if by_severity[s]
    )
    kinds = " · ".join(
        f"{_safe(kind, _FIELD_CHARS)} {count}"
        for kind, count in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return f"*{len(items)} {noun}* · {severities}\nBy kind: {kinds}"


def _summary(source: str, run_id: int | None, items: Sequence[PlanItem]) -> str:
    by_severity = Counter(item.severity for item in items)
    counts = ", ".join(f"{by_severity[s]} {s.value}" for s in _SEVERITIES_DESC if by_severity[s])
    run = f" run {run_id}" if run_id is not None else ""
    noun = "item" if len(items) == 1 else "items"
    what = f"{len(items)} {noun} ({counts})" if items else "no new items"
    return f"reconciler: {_safe(source, _FIELD_CHARS)}{run}: {what}"


def _resolved_lines(resolved: Sequence[PlanItem]) -> list[str]:
    return [
        f"• {label_of(item)} · {item.when} · {_safe(item.kind, _FIELD_CHARS)}" for item in resolved
    ]


def _see_all(count: int, report_url: str | None, see_all_hint: str) -> str:
    link = safe_link(report_url, "open the full report")
    if link is not None:
        return f"…and {count} more — {link}"
    return f"…and {count} more — run {_code(see_all_hint)}"


def render_run_message(
    *,
    source: str,
    run_id: int,
    items: Sequence[PlanItem],
    resolved: Sequence[PlanItem] = (),
    report_url: str | None = None,
    see_all_hint: str = "reconciler plan",
    max_items: int = MAX_ITEM_BLOCKS,
) -> dict[str, Any]:
    """One message for one pull run of one source: new items, most important first
    (at most ``max_items`` of them, never more than Slack's block limit allows)."""
    ordered = order_items(items)
    title = f"reconciler · {_safe(source, _FIELD_CHARS)} · run {run_id}"
    blocks: list[Block] = [_header(title)]
    if ordered:
        blocks += [_section(_counts(ordered)), {"type": "divider"}]
    reserved = len(blocks) + (1 if resolved else 0) + 1
    shown = ordered[: max(1, min(max_items, MAX_ITEM_BLOCKS, MAX_BLOCKS - reserved))]
    blocks += [_section(render_item(item)) for item in shown]
    if resolved:
        heading = f"*:white_check_mark: Resolved ({len(resolved)})*"
        lines = [heading, *_resolved_lines(resolved)]
        listing = _bounded_lines(lines, MAX_SECTION_CHARS, lambda n: f"…and {n} more resolved")
        blocks.append(_section(listing))
    hidden = len(ordered) - len(shown)
    if hidden:
        blocks.append(_context(_see_all(hidden, report_url, see_all_hint)))

    text = [_summary(source, run_id, ordered)]
    text += [_one_line(item) for item in shown[:_FALLBACK_ITEMS]]
    if len(ordered) > _FALLBACK_ITEMS:
        text.append(f"…and {len(ordered) - _FALLBACK_ITEMS} more")
    if resolved:
        text.append(f"{len(resolved)} resolved")
    return {"text": clip("\n".join(text), MAX_TEXT_CHARS), "blocks": blocks}


def render_resolved_message(
    *,
    source: str,
    items: Sequence[PlanItem],
    run_id: int | None = None,
    report_url: str | None = None,
    see_all_hint: str = "reconciler plan",
) -> dict[str, Any]:
    """A short notice listing findings whose condition no longer holds."""
    run = f" · run {run_id}" if run_id is not None else ""
    title = f"reconciler · {_safe(source, _FIELD_CHARS)}{run} · resolved"
    lines = [f"*:white_check_mark: {len(items)} resolved*", *_resolved_lines(order_items(items))]
    blocks = [
        _header(title),
        _section(
            _bounded_lines(
                lines, MAX_SECTION_CHARS, lambda n: _see_all(n, report_url, see_all_hint)
            )
        ),
    ]
    noun = "finding" if len(items) == 1 else "findings"
    text = f"reconciler: {_safe(source, _FIELD_CHARS)}{run}: {len(items)} {noun} resolved"
    return {"text": text, "blocks": blocks}


def render_test_message(*, hostname: str, version: str) -> dict[str, Any]:
    """A clearly labelled test message for ``reconciler alerts test``."""
    host = _safe(hostname, _FIELD_CHARS)
    ver = _safe(version, _FIELD_CHARS)
    body = (
        f"*This is a test message* from reconciler {ver} on {_code(hostname)}.\n"
        "Alerts from this installation will arrive in this channel. No action is needed."
    )
    return {
        "text": f"[TEST] reconciler test message from {host} (version {ver})",
        "blocks": [_header(":test_tube: [TEST] reconciler test message"), _section(body)],
    }


def mark_possible_repeat(message: dict[str, Any], message_id: int) -> dict[str, Any]:
    """The same message, its title and fallback text saying it may have arrived already
    (it is sent again because the answer to an earlier attempt was never recorded)."""
    note = f"[possible repeat of alert #{message_id}]"
    marked = dict(message)
    blocks = list(message.get("blocks") or [])
    if blocks and blocks[0].get("type") == "header":
        blocks[0] = _header(f"{note} {blocks[0]['text']['text']}")
        marked["blocks"] = blocks
    marked["text"] = clip(f"{note} {message.get('text') or ''}".strip(), MAX_TEXT_CHARS)
    return marked
