"""Email over SMTP (aiosmtplib): one message per run and route, plain text and HTML parts.

STARTTLS (default, port 587), implicit TLS (port 465) or none (loopback relays only);
the password is a secret like the others (file, systemd credential or environment).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from reconciler.alerts.channels.text import counts, item_lines, label, title
from reconciler.alerts.slack import order_items
from reconciler.alerts.webhook import DeliveryResult, DeliveryStatus
from reconciler.domain import PlanItem
from reconciler.settings import ChannelSettings

_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def render_email(
    *,
    source: str,
    run_id: int | None,
    items: Sequence[PlanItem],
    resolved: Sequence[PlanItem],
    report_url: str | None,
    max_items: int,
    see_all_hint: str,
) -> dict[str, Any]:
    """Subject, text and HTML of a run's email (stored in the outbox as JSON)."""
    ordered = order_items(items)
    subject = title(source, run_id, not items)
    if ordered:
        subject += f": {counts(ordered)}"
    if resolved:
        subject += f", {len(resolved)} resolved"
    shown = ordered[:max_items]
    text: list[str] = [subject, ""]
    parts: list[str] = [f"<h2>{html.escape(title(source, run_id, not items))}</h2>"]
    if ordered:
        parts.append(f"<p>{html.escape(counts(ordered))}</p><ul>")
    for item in shown:
        lines = item_lines(item)
        text += [*lines, ""]
        parts.append(
            f"<li><b>{html.escape(lines[0])}</b><br>"
            + "<br>".join(html.escape(line) for line in lines[1:])
            + "</li>"
        )
    if ordered:
        parts.append("</ul>")
    if len(ordered) > len(shown):
        more = f"…and {len(ordered) - len(shown)} more: run `{see_all_hint}`"
        text.append(more)
        parts.append(f"<p>{html.escape(more)}</p>")
    if resolved:
        text.append(f"Resolved ({len(resolved)}):")
        text += [f"- {label(i)} · {i.when} · {i.kind}" for i in resolved]
        parts.append(f"<p>Resolved ({len(resolved)}):</p><ul>")
        parts += [f"<li>{html.escape(f'{label(i)} · {i.when} · {i.kind}')}</li>" for i in resolved]
        parts.append("</ul>")
    if report_url:
        text.append(f"Report: {report_url}")
        parts.append(f'<p><a href="{html.escape(report_url, quote=True)}">Open the report</a></p>')
    return {"subject": subject, "text": "\n".join(text) + "\n", "html": "\n".join(parts)}


def build_message(
    channel: ChannelSettings, content: dict[str, Any], *, message_id: int, repeat: bool
) -> EmailMessage:
    message = EmailMessage()
    prefix = f"[possible repeat of alert #{message_id}] " if repeat else ""
    message["Subject"] = prefix + str(content["subject"])
    message["From"] = channel.mail_from or ""
    message["To"] = ", ".join(channel.mail_to)
    message["Date"] = formatdate(usegmt=True)
    domain = (channel.mail_from or "reconciler").rpartition("@")[2] or "reconciler"
    # The same Message-ID on every attempt: a repeat is recognizable by mail clients too.
    message["Message-ID"] = make_msgid(idstring=f"alert-{message_id}", domain=domain)
    message["X-Reconciler-Delivery"] = str(message_id)
    message.set_content(str(content["text"]))
    message.add_alternative(str(content["html"]), subtype="html")
    return message


async def send_email(
    channel: ChannelSettings, message: EmailMessage, *, password: str | None
) -> DeliveryResult:
    """Send through the channel's SMTP server; never raises for SMTP or network failures."""
    import aiosmtplib  # only where email is used

    security = channel.smtp_security
    try:
        await aiosmtplib.send(
            message,
            hostname=channel.smtp_host,
            port=channel.smtp_port or _DEFAULT_PORTS[security],
            use_tls=security == "tls",
            start_tls=security == "starttls",
            username=channel.smtp_username,
            password=password if channel.smtp_username else None,
            timeout=channel.timeout_s,
            cert_bundle=str(channel.smtp_ca_file) if channel.smtp_ca_file else None,
        )
    except aiosmtplib.SMTPAuthenticationError as e:
        return DeliveryResult(DeliveryStatus.REFUSED, f"authentication failed: {e.code}", e.code)
    except aiosmtplib.SMTPRecipientsRefused as e:
        codes = sorted({r.code for r in e.recipients})
        return DeliveryResult(DeliveryStatus.REFUSED, f"recipients refused: {codes}")
    except aiosmtplib.SMTPResponseException as e:
        status = DeliveryStatus.TRANSIENT if 400 <= e.code < 500 else DeliveryStatus.PERMANENT
        return DeliveryResult(status, f"SMTP {e.code} {e.message[:150]}", e.code)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
        return DeliveryResult(DeliveryStatus.TRANSIENT, type(e).__name__)
    return DeliveryResult(DeliveryStatus.DELIVERED, "ok")
