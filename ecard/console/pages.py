"""Rendering the console's pages: Jinja2 (autoescaped) templates, the console's security headers,
and the page every refusal becomes (the catalogue's message in the page's language)."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import MediaType, Response
from litestar.datastructures import Cookie

from ecard.console.labels import Translator
from ecard.console.session import PATH, ConsoleSession
from ecard.errors import CATALOGUE, AppError
from ecard.web import PAGE_HEADERS

CONSOLE_DIR = Path(__file__).parent
STATIC_DIR = CONSOLE_DIR / "static"
STATIC_PATH = f"{PATH}/static"

#: The platform's page headers with a stricter policy: nothing but this origin's script, style
#: and images, no frames, forms posted only here.
HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def _when(value: Any) -> str:
    """A time for people: epoch seconds, a datetime or RFC 3339 text, shown in UTC."""
    if value in (None, ""):
        return "—"
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return str(value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    return str(value)


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(CONSOLE_DIR / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )
    environment.filters["when"] = _when
    # a field the role may not see is absent from the view (UNSET), not empty
    environment.tests["shown"] = lambda value: value is not msgspec.UNSET
    return environment


def render(
    template: str,
    lang: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    cookies: list[Cookie] | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response[str]:
    """One page in ``lang``; ``session`` gives the navigation, the operator and the form token."""
    context.setdefault("notice", None)
    context.setdefault("section", "")
    context.setdefault("path", f"{PATH}/")
    html = (
        _environment()
        .get_template(template)
        .render(
            static=STATIC_PATH,
            lang=lang,
            t=Translator(lang),
            session=session,
            operator=session.operator if session else None,
            csrf=session.csrf if session else "",
            **context,
        )
    )
    return Response(
        html,
        status_code=status_code,
        media_type=MediaType.HTML,
        headers={**HEADERS, **(headers or {})},
        cookies=cookies or [],
    )


def problem_page(
    lang: str, session: ConsoleSession | None, error: AppError, back: str | None = None
) -> Response[str]:
    """A refusal as a page: the catalogue's code, status and message, and the detail (never
    personal data: services keep it out of details)."""
    spec = CATALOGUE[error.code]
    headers = {k: v for k, v in error.headers.items() if k.lower() == "retry-after"}
    return render(
        "problem.html",
        lang,
        session,
        status_code=spec.status,
        headers=headers,
        code=error.code,
        message=spec.en if lang == "en" else spec.zh,
        detail=error.detail,
        back=back,
        retry_after=headers.get("Retry-After"),
    )
