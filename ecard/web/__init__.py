"""Pages people see: Jinja2 templates (autoescaped) and static files, with the security headers
every page carries.  The pages run no inline script, so the CSP can forbid it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import MediaType, Response
from litestar.openapi.datastructures import ResponseSpec

from ecard.errors import CATALOGUE

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
STATIC_PATH = "/static"

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(WEB_DIR / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page(template: str, status_code: int = 200, **context: object) -> Response[str]:
    html = _environment().get_template(template).render(static=STATIC_PATH, **context)
    return Response(html, status_code=status_code, media_type=MediaType.HTML, headers=PAGE_HEADERS)


def page_responses(*, redirects: bool = False) -> dict[int, ResponseSpec]:
    """OpenAPI of a page: HTML on success and for every refusal the page itself explains (an
    unexpected failure stays problem+json); ``redirects`` adds the 303 back to the relying party."""
    statuses = {200, *(spec.status for spec in CATALOGUE.values())} - {500}
    specs = {
        status: ResponseSpec(
            str, media_type=MediaType.HTML, description="a page", generate_examples=False
        )
        for status in sorted(statuses)
    }
    if redirects:
        specs[303] = ResponseSpec(
            None, description="on to the relying party's redirect URI", generate_examples=False
        )
    return specs
