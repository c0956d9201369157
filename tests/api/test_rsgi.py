"""``ecard serve`` speaks granian's RSGI: the hot routes answered natively, everything else
bridged to Litestar's ASGI (ecard.rsgi).  These run a real server and check what a client sees
through both paths: headers, errors, body limits, streamed bodies, paths and query strings."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.live import LiveServer, Seeded, seed

MAX_BODY = 1_048_576  # the default ECARD_MAX_BODY_BYTES
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, Seeded]]:
    server = LiveServer.start()
    try:
        yield server, asyncio.run(seed(server.url))
    finally:
        server.stop()


async def chunked(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    """A body of undeclared length (chunked transfer encoding)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_code_is_served_natively_with_the_edge_headers(live: tuple[LiveServer, Seeded]) -> None:
    server, seeded = live
    holder = {"Authorization": f"Bearer {seeded.holder_token}"}
    issued = httpx.post(f"{server.url}/holder/v1/codes", headers=holder)
    assert issued.status_code == 201, issued.text
    assert issued.json()["code"].startswith("EC1:")
    assert (
        issued.headers["content-type"] == "application/json"
        and issued.headers["cache-control"] == "no-store"
    )
    assert (
        issued.headers["x-content-type-options"] == "nosniff"
        and issued.headers["x-frame-options"] == "DENY"
    )
    assert GENERATED_ID.fullmatch(issued.headers["x-request-id"])
    again = httpx.post(
        f"{server.url}/holder/v1/codes", headers={**holder, "X-Request-ID": "trace-42"}
    )
    assert again.headers["x-request-id"] == "trace-42"
    assert issued.json()["code"] != again.json()["code"]


def test_a_refusal_on_a_native_route_is_a_catalogue_problem(
    live: tuple[LiveServer, Seeded],
) -> None:
    server, _ = live
    refused = httpx.post(f"{server.url}/holder/v1/codes", headers={"X-Request-ID": "abc"})
    assert refused.status_code == 401
    problem = refused.json()
    assert (
        problem["code"] == "unauthenticated"
        and problem["request_id"] == "abc" == refused.headers["x-request-id"]
    )
    assert problem["instance"] == "/holder/v1/codes"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["www-authenticate"] == 'Bearer realm="holder"'
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_a_verification_body_over_the_limit_is_refused_declared_or_not(
    live: tuple[LiveServer, Seeded],
) -> None:
    """Declared too long: refused before it is read.  Undeclared (chunked): refused once the
    chunks read pass the limit.  The caller is authenticated first, so both need credentials."""
    server, seeded = live
    verifier = seeded.rp_auth()  # a relying party, not a verifier: the body is never looked at
    too_big = b"x" * (MAX_BODY + 1)
    declared = httpx.post(f"{server.url}/verifier/v1/verifications", content=too_big)
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    async def undeclared() -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(
                f"{server.url}/verifier/v1/verifications", content=chunked(too_big)
            )

    response = asyncio.run(undeclared())
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    wrong_caller = httpx.post(
        f"{server.url}/verifier/v1/verifications", headers=verifier, json={"code": "EC1:X"}
    )
    assert wrong_caller.status_code in {401, 403}


def test_bridged_routes_keep_paths_queries_and_headers(live: tuple[LiveServer, Seeded]) -> None:
    server, seeded = live
    holder = {"Authorization": f"Bearer {seeded.holder_token}"}
    svg = httpx.get(
        f"{server.url}/holder/v1/codes/qr", params={"format": "svg", "scale": "3"}, headers=holder
    )
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg")
    assert svg.content.lstrip().startswith(b"<")
    assert svg.headers["x-content-type-options"] == "nosniff" and GENERATED_ID.fullmatch(
        svg.headers["x-request-id"]
    )
    missing = httpx.get(f"{server.url}/no/such/%E4%B8%AD%20page")
    assert missing.status_code == 404 and missing.json()["instance"] == "/no/such/中 page"


def test_bridged_bodies_stream_both_ways(live: tuple[LiveServer, Seeded]) -> None:
    """A static file goes out as it is read; a chunked request body over the limit is refused on
    a bridged route too."""
    server, seeded = live
    script = httpx.get(f"{server.url}/verifier/static/verifier.js")
    assert script.status_code == 200 and b"function" in script.content
    assert int(script.headers["content-length"]) == len(script.content)

    async def undeclared() -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(
                f"{server.url}/operator/v1/persons",
                headers=seeded.admin,
                content=chunked(b"x" * (MAX_BODY + 1)),
            )

    response = asyncio.run(undeclared())
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
