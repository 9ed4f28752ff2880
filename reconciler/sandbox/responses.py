"""Response builders: JSON with exact decimals, and each provider's error bodies.

Fastly answers a bad token with its legacy ``{"msg", "detail"}`` body, a bad usage-metrics
parameter with ``application/problem+json`` and a bad invoices parameter with an
``{"errors": [...]}`` list: the three shapes PROVIDERS.md lists, so clients meet all three.
Akamai's gateway answers auth failures with its ``pep-authn/deny`` problem; the Billing API
its ``/billing/error-types/...`` body; the Contract API its ``/contract-api/error-types/...``.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from reconciler.sandbox import jsonout
from reconciler.sandbox.faults import Fault, PayloadView, apply_data_faults, truncated
from reconciler.sandbox.state import STATE_KEY

DATA_FAULTS: web.RequestKey[list[Fault]] = web.RequestKey("sandbox_data_faults", list)
PROBLEM_JSON = "application/problem+json"


def json_response(
    request: web.Request,
    payload: Any,
    view: PayloadView | None = None,
    *,
    status: int = 200,
    content_type: str = "application/json",
) -> web.Response:
    """Encode ``payload``; on success, apply the data faults fired for this request."""
    faults = request.get(DATA_FAULTS, []) if status < 400 else []
    if view is not None and faults:
        apply_data_faults(faults, view)
    body = truncated(faults, jsonout.dump_bytes(payload))
    return web.Response(body=body, status=status, content_type=content_type)


# --- Fastly -------------------------------------------------------------------------------


def fastly_legacy_error(request: web.Request, status: int, msg: str, detail: str) -> web.Response:
    return json_response(request, {"msg": msg, "detail": detail}, status=status)


def fastly_problem(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    body = {
        "type": f"https://api.fastly.com/errors/{status}",
        "title": title,
        "detail": detail,
        "status": status,
    }
    return json_response(request, body, status=status, content_type=PROBLEM_JSON)


def fastly_errors(
    request: web.Request, status: int, title: str, detail: str, code: str
) -> web.Response:
    request_id = _request_id(request)
    body = {
        "errors": [
            {
                "code": code,
                "detail": detail,
                "id": request_id,
                "status": str(status),
                "title": title,
            }
        ]
    }
    return json_response(request, body, status=status)


# --- Akamai -------------------------------------------------------------------------------


def akamai_auth_denied(request: web.Request, detail: str) -> web.Response:
    """The EdgeGrid gateway's 401, as in PROVIDERS.md and the Contract API's examples."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    body = {
        "type": "https://problems.luna.akamaiapis.net/-/pep-authn/deny",
        "title": "Not authorized",
        "status": 401,
        "detail": detail,
        "instance": f"{request.scheme}://{request.host}{request.raw_path}",
        "method": request.method,
        "serverIp": sock[0] if sock else "127.0.0.1",
        "clientIp": peer[0] if peer else "127.0.0.1",
        "requestId": _request_id(request),
        "requestTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json_response(request, body, status=401, content_type=PROBLEM_JSON)


def akamai_billing_error(
    request: web.Request, status: int, title: str, *problems: str
) -> web.Response:
    number = {400: 1, 403: 3, 404: 2}.get(status, 9)
    body = {
        "type": f"/billing/error-types/{number}",
        "title": title,
        "incidentId": _request_id(request),
        "errors": [{"type": f"/billing/error-types/{number}", "title": p} for p in problems],
    }
    return json_response(request, body, status=status, content_type=PROBLEM_JSON)


def contract_api_error(
    request: web.Request, status: int, title: str, *problems: tuple[str, str]
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"/contract-api/error-types/E{status}",
        "status": str(status),
        "title": title,
    }
    if problems:
        body["errors"] = [{"title": t, "detail": d} for t, d in problems]
    return json_response(request, body, status=status, content_type=PROBLEM_JSON)


# --- faults answering in place of the handler ---------------------------------------------


def retry_after_value(style: str, seconds: int) -> str:
    if style == "date":
        when = datetime.now(UTC) + timedelta(seconds=seconds)
        return email.utils.format_datetime(when, usegmt=True)
    return str(seconds)


def fault_status(
    request: web.Request, status: int, retry_after: str | None, retry_after_s: int
) -> web.Response:
    """A 202/429/5xx in the style of the provider the route belongs to."""
    akamai = request.path.startswith(("/billing/v1/", "/contract-api/"))
    titles = {
        202: "Accepted",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    title = titles[status]
    if akamai:
        body: dict[str, Any] = {
            "type": f"https://problems.luna.akamaiapis.net/-/{status}",
            "title": title,
            "status": status,
            "detail": f"{title} (sandbox fault)",
            "requestId": _request_id(request),
        }
        response = json_response(request, body, status=status, content_type=PROBLEM_JSON)
    elif status == 202:
        body = {"msg": "Month-to-date invoice is being computed", "detail": "retry later"}
        response = json_response(request, body, status=status)
    else:
        response = fastly_legacy_error(request, status, title, "sandbox fault")
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after_value(retry_after, retry_after_s)
    if status == 429 and not akamai:
        reset = int(datetime.now(UTC).timestamp()) + retry_after_s
        response.headers["Fastly-RateLimit-Remaining"] = "0"
        response.headers["Fastly-RateLimit-Reset"] = str(reset)
    return response


HTML_ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
    "<body><h1>Error 503 Service Unavailable</h1>\n<p>Service Unavailable</p>\n"
    "<h3>Guru Mediation:</h3><p>Details: cache-sandbox 1700000000 1234567890</p>\n"
    "<hr><p>Varnish cache server</p></body></html>\n"
)


def html_error_page() -> web.Response:
    return web.Response(text=HTML_ERROR_PAGE, status=200, content_type="text/html")


def _request_id(request: web.Request) -> str:
    return request.app[STATE_KEY].next_request_id()
