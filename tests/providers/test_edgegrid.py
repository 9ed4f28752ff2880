from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yarl
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from reconciler.providers.edgegrid import (
    EdgeGridCredentials,
    EdgeGridVerificationError,
    authorization_header,
    content_hash,
    data_to_sign,
    edgegrid_timestamp,
    parse_authorization,
    signature,
    signing_key,
    verify_authorization,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "edgegrid"
TESTDATA: dict[str, Any] = json.loads((FIXTURES / "testdata.json").read_text(encoding="utf-8"))
TESTCASES: list[dict[str, Any]] = json.loads(
    (FIXTURES / "testcases.json").read_text(encoding="utf-8")
)
BASE = yarl.URL(TESTDATA["base_url"])
SIGNED_AT = datetime(2014, 3, 21, 19, 34, 21, tzinfo=UTC)


def vector_creds() -> EdgeGridCredentials:
    return EdgeGridCredentials(
        client_token=TESTDATA["client_token"],
        client_secret=SecretStr(TESTDATA["client_secret"]),
        access_token=TESTDATA["access_token"],
        host=BASE.host_port_subcomponent or "",
        max_body=TESTDATA["max_body"],
    )


def case_headers(case: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in case["request"].get("headers", []):
        headers.update(pair)
    return headers


def case_body(case: dict[str, Any]) -> bytes:
    data: str = case["request"].get("data") or ""
    return data.encode("utf-8")


def test_all_fifteen_vectors_are_present() -> None:
    assert len(TESTCASES) == 15
    assert sum("failsWithMessage" in case for case in TESTCASES) == 1


@pytest.mark.parametrize("case", TESTCASES, ids=[case["testName"] for case in TESTCASES])
def test_official_vector(case: dict[str, Any]) -> None:
    creds = vector_creds()
    headers = case_headers(case)
    method: str = case["request"]["method"]
    url = f"{TESTDATA['base_url'].rstrip('/')}{case['request']['path']}"
    host = headers.get("Host", BASE.host_port_subcomponent or "")
    unsigned = (
        f"EG1-HMAC-SHA256 client_token={TESTDATA['client_token']};"
        f"access_token={TESTDATA['access_token']};timestamp={TESTDATA['timestamp']};"
        f"nonce={TESTDATA['nonce']};"
    )

    def sign_directly() -> str:
        data = data_to_sign(
            method,
            "https",
            host,
            case["request"]["path"],
            headers=headers,
            headers_to_sign=TESTDATA["headers_to_sign"],
            body=case_body(case),
            max_body=TESTDATA["max_body"],
            auth_header=unsigned,
        )
        key = signing_key(TESTDATA["client_secret"], TESTDATA["timestamp"])
        return f"{unsigned}signature={signature(key, data)}"

    def sign() -> str:
        return authorization_header(
            creds,
            method,
            url,
            body=case_body(case),
            headers=headers,
            headers_to_sign=TESTDATA["headers_to_sign"],
            timestamp=TESTDATA["timestamp"],
            nonce=TESTDATA["nonce"],
        )

    if "failsWithMessage" in case:
        # Akamai's client refuses the header value before signing; so do we. The signature
        # other clients compute for it (whitespace trimmed and collapsed) still matches.
        with pytest.raises(ValueError) as raised:
            sign()
        assert str(raised.value) == case["failsWithMessage"]
        assert sign_directly() == case["expectedAuthorization"]
        return

    expected_data = data_to_sign(
        method,
        "https",
        host,
        case["request"]["path"],
        headers=headers,
        headers_to_sign=TESTDATA["headers_to_sign"],
        body=case_body(case),
        max_body=TESTDATA["max_body"],
        auth_header="",
    )
    assert expected_data == case["expectedDataToSign"]
    assert sign() == case["expectedAuthorization"]
    assert sign_directly() == case["expectedAuthorization"]


def test_signing_key_vector() -> None:
    key = signing_key(TESTDATA["client_secret"], TESTDATA["timestamp"])
    assert key == TESTDATA["sign_key_test"]


def test_content_hash_vector_and_rules() -> None:
    assert content_hash("POST", b"test_body", 2048) == TESTDATA["content_hash_test"]
    assert content_hash("post", b"test_body", 2048) == TESTDATA["content_hash_test"]
    assert content_hash("PUT", b"test_body", 2048) == ""
    assert content_hash("POST", b"", 2048) == ""
    # Only the first max_body bytes count.
    assert content_hash("POST", b"test_body and more", 9) == TESTDATA["content_hash_test"]
    assert content_hash("POST", b"test_body and more", 10) != TESTDATA["content_hash_test"]


def test_json_post_vector() -> None:
    # Akamai's test_json: POST /testapi/v1/t3?extended=true with json={"key": "value"},
    # default max_body and no headers to sign.
    creds = EdgeGridCredentials(
        client_token=TESTDATA["client_token"],
        client_secret=SecretStr(TESTDATA["client_secret"]),
        access_token=TESTDATA["access_token"],
        host=BASE.host_port_subcomponent or "",
    )
    header = authorization_header(
        creds,
        "POST",
        BASE.join(yarl.URL("/testapi/v1/t3?extended=true")),
        body=json.dumps({"key": "value"}).encode(),
        timestamp=TESTDATA["timestamp"],
        nonce=TESTDATA["nonce"],
    )
    assert header == TESTDATA["jsontest_hash"]


def test_timestamp_format() -> None:
    assert edgegrid_timestamp(SIGNED_AT) == TESTDATA["timestamp"]
    paris = timezone(timedelta(hours=1))
    assert (
        edgegrid_timestamp(datetime(2014, 3, 21, 20, 34, 21, tzinfo=paris))
        == (TESTDATA["timestamp"])
    )
    with pytest.raises(ValueError):
        edgegrid_timestamp(datetime(2014, 3, 21, 19, 34, 21))


# --- verification --------------------------------------------------------------------------

CLIENTS = {TESTDATA["client_token"]: (TESTDATA["client_secret"], TESTDATA["access_token"])}
URL = "https://akab-host.luna.akamaiapis.net/billing/v1/contracts/K-0N7RAK7/products"
QUERY = "?start=2024-01&end=2024-03&accountSwitchKey=1-ABC:1-DEF"


def verify(
    value: str,
    *,
    method: str = "GET",
    url: str = URL + QUERY,
    body: bytes = b"",
    now: datetime = SIGNED_AT,
    clients: Mapping[str, tuple[str, str]] = CLIENTS,
    headers: Mapping[str, str] | None = None,
    headers_to_sign: tuple[str, ...] = (),
) -> None:
    verify_authorization(
        value,
        method=method,
        url=url,
        body=body,
        lookup_secret=clients.get,
        now=now,
        max_body=TESTDATA["max_body"],
        headers=headers,
        headers_to_sign=headers_to_sign,
    )


def signed(
    method: str = "GET",
    url: str = URL + QUERY,
    body: bytes = b"",
    creds: EdgeGridCredentials | None = None,
    headers: Mapping[str, str] | None = None,
    headers_to_sign: tuple[str, ...] = (),
) -> str:
    return authorization_header(
        creds or vector_creds(),
        method,
        url,
        body=body,
        headers=headers,
        headers_to_sign=headers_to_sign,
        timestamp=TESTDATA["timestamp"],
        nonce=TESTDATA["nonce"],
    )


def reason(call: Any) -> str:
    with pytest.raises(EdgeGridVerificationError) as raised:
        call()
    return raised.value.reason


def test_round_trip_get_post_and_signed_headers() -> None:
    verify(signed())
    verify(signed("POST", body=b"x" * 5000), method="POST", body=b"x" * 5000)
    # Bytes past max_body are not covered by the hash.
    verify(signed("POST", body=b"x" * 5000), method="POST", body=b"x" * 2048 + b"y")
    headers = {"X-Test1": "a   b", "X-Other": "free"}
    verify(
        signed(headers=headers, headers_to_sign=("X-Test1",)),
        headers={"x-test1": "a b", "X-Other": "changed"},
        headers_to_sign=("X-Test1",),
    )
    # Default timestamp and a fresh nonce: verifies against the real clock.
    verify(authorization_header(vector_creds(), "GET", URL), url=URL, now=datetime.now(UTC))


def test_each_header_gets_a_fresh_nonce() -> None:
    first = parse_authorization(authorization_header(vector_creds(), "GET", URL))
    second = parse_authorization(authorization_header(vector_creds(), "GET", URL))
    assert first["nonce"] != second["nonce"]


def test_parse_authorization() -> None:
    fields = parse_authorization(TESTDATA["jsontest_hash"])
    assert fields == {
        "client_token": TESTDATA["client_token"],
        "access_token": TESTDATA["access_token"],
        "timestamp": TESTDATA["timestamp"],
        "nonce": TESTDATA["nonce"],
        "signature": "nONuDe50qGrPius4Rg4D2jfi/2zDZWAYRUG6RudJLNM=",
    }


def test_rejects_tampered_path() -> None:
    tampered = URL.replace("K-0N7RAK7", "K-OTHER") + QUERY
    assert reason(lambda: verify(signed(), url=tampered)) == "The signature does not match"


def test_rejects_tampered_query() -> None:
    tampered = URL + QUERY.replace("2024-03", "2024-04")
    assert reason(lambda: verify(signed(), url=tampered)) == "The signature does not match"
    assert reason(lambda: verify(signed(), url=URL)) == "The signature does not match"


def test_rejects_tampered_method_body_host_and_signed_header() -> None:
    header = signed("POST", body=b"{}")
    mismatch = "The signature does not match"
    assert reason(lambda: verify(header, method="PUT", body=b"{}")) == mismatch
    assert reason(lambda: verify(header, method="POST", body=b"{ }")) == mismatch
    other_host = (URL + QUERY).replace("akab-host", "akab-other")
    assert reason(lambda: verify(header, method="POST", body=b"{}", url=other_host)) == mismatch
    with_header = signed(headers={"X-Test1": "one"}, headers_to_sign=("X-Test1",))
    assert (
        reason(
            lambda: verify(with_header, headers={"X-Test1": "two"}, headers_to_sign=("X-Test1",))
        )
        == mismatch
    )


def test_rejects_wrong_secret() -> None:
    clients = {TESTDATA["client_token"]: ("a-different-secret=", TESTDATA["access_token"])}
    assert reason(lambda: verify(signed(), clients=clients)) == "The signature does not match"


def test_rejects_unknown_client_token() -> None:
    assert reason(lambda: verify(signed(), clients={})) == "unknown client token"


def test_rejects_access_token_mismatch() -> None:
    clients = {TESTDATA["client_token"]: (TESTDATA["client_secret"], "akab-other-access")}
    assert reason(lambda: verify(signed(), clients=clients)) == "access token mismatch"


@pytest.mark.parametrize("offset_s", [301, -301, 86400])
def test_rejects_skewed_timestamp(offset_s: int) -> None:
    now = SIGNED_AT + timedelta(seconds=offset_s)
    assert reason(lambda: verify(signed(), now=now)) == "timestamp too far off"


@pytest.mark.parametrize("offset_s", [300, -300, 0])
def test_accepts_timestamp_within_skew(offset_s: int) -> None:
    verify(signed(), now=SIGNED_AT + timedelta(seconds=offset_s))


GOOD = TESTDATA["jsontest_hash"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer abc",
        "EG1-HMAC-SHA256",
        "EG1-HMAC-SHA256 ",
        GOOD.replace("EG1-HMAC-SHA256 ", "EG1-HMAC-SHA1 "),
        GOOD.replace("EG1-HMAC-SHA256 ", "EG1-HMAC-SHA256  "),
        GOOD + ";",
        GOOD.replace(";nonce=", ";nonce=x;nonce="),
        GOOD.replace("nonce=nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx;", ""),
        GOOD.replace("nonce=nonce-xx-xxxx-xxxx-xxxx-xxxxxxxxxxxx;", "nonce=;"),
        GOOD.replace("timestamp=20140321T19:34:21+0000", "timestamp=2014-03-21T19:34:21Z"),
        GOOD.replace("timestamp=20140321T19:34:21+0000", "timestamp=20141321T19:34:21+0000"),
        GOOD.replace("signature=nONuDe50", "signature=nONuDe5"),
        GOOD.replace("signature=nONuDe50", "signature=nONuDé50"),
        GOOD.replace(";nonce=", ";extra=1;nonce="),
        "EG1-HMAC-SHA256 signature=nONuDe50qGrPius4Rg4D2jfi/2zDZWAYRUG6RudJLNM=;"
        + GOOD.split(" ", 1)[1].rsplit(";signature=", 1)[0],
    ],
)
def test_rejects_malformed_header(value: str) -> None:
    assert reason(lambda: verify(value)) == "malformed authorization header"


@given(
    path=st.text(min_size=0, max_size=20),
    key=st.text(min_size=1, max_size=10),
    value=st.text(max_size=20),
)
def test_round_trip_any_path_and_query(path: str, key: str, value: str) -> None:
    url = yarl.URL.build(scheme="https", host="akab-host.example", path="/" + path).with_query(
        {key: value}
    )
    header = signed(url=str(url))
    # The verifier sees what went on the wire: the re-quoted path and query.
    verify(header, url=str(url))
    with pytest.raises(EdgeGridVerificationError):
        verify(header, url=str(url.update_query({"tampered": "1"})))
