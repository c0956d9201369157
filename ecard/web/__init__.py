"""Pages people see: Jinja2 templates (autoescaped) and static files, with the security headers
every page carries.  The pages run no inline script, so the CSP can forbid it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Response

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
    return Response(html, status_code=status_code, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
