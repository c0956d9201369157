"""Response helpers for controllers: cacheable documents with an ETag, and the headers of a
pre-encoded JSON reply."""

from __future__ import annotations

import hashlib

from litestar import Request, Response

from ecard.edge import SECURITY_HEADER_PAIRS


def etagged(
    request: Request, body: bytes, *, max_age: int, media_type: str = "application/json"
) -> Response:
    """A response with a strong ETag; ``If-None-Match`` with the same tag gets 304 and no body."""
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={max_age}"}
    if tag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


def json_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    """The headers of a :class:`ecard.http.hot_routes.JsonReply`, built once per kind of reply:
    the JSON media type, the security headers the edge would add, and ``headers``."""
    return [
        ("content-type", "application/json"),
        *SECURITY_HEADER_PAIRS,
        *((name.lower(), value) for name, value in headers.items()),
    ]


__all__ = ["etagged", "json_headers"]
