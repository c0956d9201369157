"""The operator console's pages at ``/console/`` (``docs/console.md``): server-rendered, zh-CN by
default, en by ``?lang=en`` or Accept-Language.

Each handler is thin: it reads the session (:mod:`ecard.console.session`), checks the form token
on every POST, parses the query or form, calls the *same service* the ``/operator/v1`` route calls
(with the same permission — :func:`ecard.auth.require_permission` — and so the same field masking
and the same audit of reads), and renders the answer.  A refusal of any kind becomes a page with
the catalogue's message and status, never a 500 for bad input.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from markupsafe import Markup

from ecard.auth import require_permission
from ecard.codes.controllers import code_service
from ecard.consent.ledger_bridge import verify_ledger
from ecard.console import service as console
from ecard.console.labels import REPLACEMENT_REASON, card_action, card_actions
from ecard.console.pages import HEADERS, STATIC_DIR, STATIC_PATH, problem_page, render
from ecard.console.session import (
    CSRF_FIELD,
    LANGUAGES,
    PATH,
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    ConsoleSession,
    SignInRequired,
    check_csrf,
    check_origin,
    csrf_token,
    ended_cookie,
    language,
    language_cookie,
    new_pre_session,
    pre_session_cookie,
    session_cookie,
    session_of,
)
from ecard.directory import catalogue as directory_catalogue
from ecard.directory import schemas as directory_schemas
from ecard.directory.controllers import all_provinces
from ecard.directory.service import DirectoryService, parse_query
from ecard.errors import CATALOGUE, AppError, exception_response
from ecard.partners import schemas as partner_schemas
from ecard.partners.service import PartnerService
from ecard.partners.workflow import FilingStatus
from ecard.platform import Platform
from ecard.registry import schemas as registry_schemas
from ecard.registry.card_life import CardLifeService
from ecard.registry.service import AccessService, RegistryService
from ecard.statistics.dashboard import MAX_DAYS as MAX_DASHBOARD_DAYS
from ecard.statistics.dashboard import render_dashboard
from ecard.terminal import schemas as terminal_schemas
from ecard.terminal.controllers import provide_terminals
from ecard.terminal.service import TerminalService

T = TypeVar("T")
#: a request of any route (the console reads no typed user, auth or state from it)
Req = Request[Any, Any, Any]

PAGE_SIZE = 20
MAX_PAGE = 10_000
MAX_FIELD = 4096
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_REGION = re.compile(r"^[1-9]\d{5}$")
_STATE_KEY = "console_session"


# --- reading requests ------------------------------------------------------------------------


def _lang(request: Req) -> str:
    return language(request)


def _remember_language(request: Req, platform: Platform) -> list[Cookie]:
    asked = request.query_params.get("lang")
    return [language_cookie(platform, str(asked))] if asked in LANGUAGES else []


async def _session(request: Req, platform: Platform) -> ConsoleSession:
    session = await session_of(request, platform)
    request.state[_STATE_KEY] = session
    return session


def _clean(name: str, value: str, limit: int = MAX_FIELD) -> str:
    if len(value) > limit or "\x00" in value:
        raise AppError("validation_failed", f"{name}: at most {limit} characters, no NUL")
    return value


def _query(request: Req, *names: str) -> dict[str, str]:
    """Single-valued query parameters (a repeated one is refused)."""
    values = {}
    for name in names:
        found = request.query_params.getall(name, [])
        if len(found) > 1:
            raise AppError("validation_failed", f"{name} appears more than once")
        values[name] = _clean(name, str(found[0]).strip(), 256) if found else ""
    return values


async def _form(request: Req) -> dict[str, str]:
    """A urlencoded form, each field at most once; anything else is an empty form (and so fails
    the form token)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    values: dict[str, str] = {}
    for name, value in (await request.form()).multi_items():
        if name in values:
            raise AppError("validation_failed", f"{name} appears more than once")
        if not isinstance(value, str):
            raise AppError("validation_failed", f"{name}: not a text field")
        values[name] = _clean(name, value)
    return values


async def _posted(request: Req, platform: Platform) -> tuple[ConsoleSession, dict[str, str]]:
    """The session and the form of a POST, after the form-token and origin rules."""
    session = await _session(request, platform)
    form = await _form(request)
    check_origin(request, platform)
    check_csrf(session.csrf, form.get(CSRF_FIELD))
    return session, form


def _page_number(raw: str) -> int:
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise AppError("validation_failed", f"page: a number from 1 to {MAX_PAGE}")
    return int(raw)


def _id(value: str, missing: str) -> str:
    if not _ID.match(value):
        raise AppError(missing)
    return value


def _convert(kind: type[T], data: dict[str, Any]) -> T:
    """A form's fields as the API's request struct, with the API's validation."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as error:
        raise AppError("validation_failed", str(error)) from None


def _optional_int(raw: str, name: str) -> int | None:
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise AppError("validation_failed", f"{name}: a whole number") from None


def _list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _json_object(raw: str, name: str) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise AppError("validation_failed", f"{name}: not JSON") from None
    if not isinstance(value, dict):
        raise AppError("validation_failed", f"{name}: a JSON object")
    return value


def _see(location: str) -> Redirect:
    return Redirect(location, status_code=303, headers=HEADERS)


def _page(
    request: Req,
    platform: Platform,
    template: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    return render(
        template,
        _lang(request),
        session,
        status_code=status_code,
        cookies=[*_remember_language(request, platform), *(cookies or [])],
        path=request.url.path,
        **context,
    )


# --- refusals as pages -------------------------------------------------------------------------


def _signed_out(request: Req, _: SignInRequired) -> Response[Any]:
    return _see(f"{PATH}/login")


def _refused(request: Req, error: AppError) -> Response[str]:
    session = request.state.get(_STATE_KEY)
    return problem_page(_lang(request), session, error)


def _framework_refusal(request: Req, error: HTTPException) -> Response[str]:
    if isinstance(error, ValidationException):
        return _refused(request, AppError("validation_failed", str(error.detail)))
    problem = exception_response(request, error)
    return _as_page(request, problem)


def _unexpected(request: Req, error: Exception) -> Response[str]:
    """Logged and classified by the one handler (:func:`ecard.errors.exception_response`: a store
    or database away, text the database cannot store …), shown as a page."""
    return _as_page(request, exception_response(request, error))


def _as_page(request: Req, problem: Response[Any]) -> Response[str]:
    code = getattr(problem.content, "code", "internal_error")
    detail = getattr(problem.content, "detail", None)
    headers = {k: v for k, v in problem.headers.items() if k.lower() == "retry-after"}
    return _refused(
        request, AppError(code if code in CATALOGUE else "internal_error", detail, headers=headers)
    )


# --- the pages ---------------------------------------------------------------------------------


class ConsoleController(Controller):
    path = PATH
    include_in_schema = False
    exception_handlers = {
        SignInRequired: _signed_out,
        AppError: _refused,
        HTTPException: _framework_refusal,
        Exception: _unexpected,
    }

    # --- session ---------------------------------------------------------------------------

    @get("/login")
    async def login_form(self, request: Req, platform: NamedDependency[Platform]) -> Response[Any]:
        try:
            await _session(request, platform)
        except SignInRequired:
            pass
        else:
            return _see(f"{PATH}/")
        return _login_page(request, platform)

    @post("/login")
    async def login(self, request: Req, platform: NamedDependency[Platform]) -> Response[Any]:
        form = await _form(request)
        check_origin(request, platform)
        pre = request.cookies.get(PRE_SESSION_COOKIE, "")
        check_csrf(csrf_token(platform, pre, "login") if pre else "\x00", form.get(CSRF_FIELD))
        username = form.get("username", "").strip()
        try:
            data = _convert(
                registry_schemas.LoginRequest,
                {"username": username, "password": form.get("password", "")},
            )
            client_ip = request.client.host if request.client else "-"
            issued = await AccessService(platform).login(data, client_ip)
        except AppError as error:
            return _login_page(request, platform, error=error, username=username, pre=pre)
        response = _see(f"{PATH}/")
        response.cookies.append(session_cookie(platform, issued.access_token))
        response.cookies.append(ended_cookie(platform, PRE_SESSION_COOKIE))
        return response

    @post("/logout")
    async def logout(self, request: Req, platform: NamedDependency[Platform]) -> Response[Any]:
        session, _ = await _posted(request, platform)
        await AccessService(platform).logout(session.operator)
        response = _see(f"{PATH}/login")
        response.cookies.append(ended_cookie(platform, SESSION_COOKIE))
        return response

    @get("/")
    async def home(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        return _page(request, platform, "home.html", session, section="home")

    # --- persons and cards -----------------------------------------------------------------

    @get("/persons")
    async def persons(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        form = _query(request, "identity_number", "name", "region", "page")
        page = _page_number(form["page"])
        found = None
        if any(form[k] for k in ("identity_number", "name", "region")):
            found = await RegistryService(platform).search_persons(
                session.operator,
                identity_number=form["identity_number"] or None,
                name=form["name"] or None,
                region=form["region"] or None,
                limit=PAGE_SIZE,
                offset=(page - 1) * PAGE_SIZE,
            )
        return _page(
            request,
            platform,
            "persons.html",
            session,
            section="persons",
            form=form,
            found=found,
            page=page,
            exact_search=session.can("pii:full"),
        )

    @get("/persons/{person_id:str}")
    async def person(
        self, request: Req, person_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        person_id = _id(person_id, "person_not_found")
        registry = RegistryService(platform)
        person = await registry.get_person(person_id, session.operator)
        cards = await registry.list_cards(
            session.operator, person_id=person_id, status=None, limit=50, offset=0
        )
        return _page(
            request, platform, "person.html", session, section="persons", person=person, cards=cards
        )

    @get("/cards/{card_id:str}")
    async def card(
        self, request: Req, card_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        card_id = _id(card_id, "card_not_found")
        registry = RegistryService(platform)
        card = await registry.get_card(card_id, session.operator)
        history = await registry.card_history(card_id, session.operator)
        actions = card_actions(card.status) if session.can("registry:write") else []
        done = _query(request, "done")["done"]
        return _page(
            request,
            platform,
            "card.html",
            session,
            section="persons",
            card=card,
            history=history,
            actions=actions,
            notice="done" if done else None,
        )

    @get("/cards/{card_id:str}/confirm")
    async def confirm_card_action(
        self, request: Req, card_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:write")
        card_id = _id(card_id, "card_not_found")
        card = await RegistryService(platform).get_card(card_id, session.operator)
        action = card_action(card.status, _query(request, "to")["to"])
        if action is None:
            raise AppError(
                "invalid_status_transition", f"no such move from {card.status} for an operator"
            )
        return _page(
            request,
            platform,
            "card_confirm.html",
            session,
            section="persons",
            card=card,
            action=action,
            reasons=list(REPLACEMENT_REASON),
        )

    @post("/cards/{card_id:str}/status")
    async def change_card_status(
        self, request: Req, card_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Redirect:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "registry:write")
        card_id = _id(card_id, "card_not_found")
        change = _convert(
            registry_schemas.StatusChange,
            {
                "status": form.get("to", ""),
                "reason": form.get("reason", "").strip(),
                "expected_version": _optional_int(form.get("expected_version", ""), "version"),
            },
        )
        await RegistryService(platform).change_card_status(
            card_id, change, session.operator.actor, session.operator
        )
        return _see(f"{PATH}/cards/{card_id}?done=status")

    @post("/cards/{card_id:str}/replacement-request")
    async def request_replacement(
        self, request: Req, card_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Redirect:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "registry:write")
        card_id = _id(card_id, "card_not_found")
        data = _convert(
            registry_schemas.ReplacementRequest,
            {
                "reason": form.get("replacement_reason", ""),
                "note": form.get("note", "").strip(),
                "expected_version": _optional_int(form.get("expected_version", ""), "version"),
            },
        )
        await RegistryService(platform).request_replacement(card_id, data, session.operator)
        return _see(f"{PATH}/cards/{card_id}?done=replacement_request")

    @post("/cards/{card_id:str}/replace")
    async def replace(
        self, request: Req, card_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Redirect:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "registry:write")
        card_id = _id(card_id, "card_not_found")
        stock = form.get("stock_card_id", "").strip()
        if stock:
            data = _convert(registry_schemas.Replacement, {"stock_card_id": stock})
        else:
            new_card = {
                k: form.get(k, "").strip().upper()
                for k in ("card_number", "chip_serial", "identification_code")
            }
            new_card.update(
                issue_date=form.get("issue_date", ""),
                expiry_date=form.get("expiry_date", ""),
            )
            data = _convert(registry_schemas.Replacement, {"new_card": new_card})
        done = await CardLifeService(platform).replace(card_id, data, session.operator.actor)
        return _see(f"{PATH}/cards/{done.new_card_id}?done=replaced")

    # --- filings ---------------------------------------------------------------------------

    @get("/filings")
    async def filings(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        form = _query(request, "status", "q", "page")
        status = form["status"] or None
        if status is not None and status not in {s.value for s in FilingStatus}:
            raise AppError("validation_failed", "status: not a filing status")
        page = _page_number(form["page"])
        partners = PartnerService(platform)
        counts = {
            s.value: (await partners.search(status=s.value, limit=1)).total for s in FilingStatus
        }
        found = await partners.search(
            status=status, q=form["q"] or None, page=page, limit=PAGE_SIZE
        )
        return _page(
            request,
            platform,
            "filings.html",
            session,
            section="filings",
            form=form,
            counts=counts,
            found=found,
            page=page,
        )

    @get("/filings/{application_id:str}")
    async def filing(
        self,
        request: Req,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        return await _filing_page(request, platform, session, application_id)

    @get("/filings/{application_id:str}/confirm")
    async def confirm_step(
        self,
        request: Req,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "clients:manage")
        application_id = _id(application_id, "application_not_found")
        filing = await PartnerService(platform).get(application_id)
        step = _query(request, "step")["step"]
        if step not in filing.allowed_steps:
            raise AppError(
                "client_status_conflict", f"step {step[:32]} is not allowed from {filing.status}"
            )
        return _page(
            request,
            platform,
            "filing_confirm.html",
            session,
            section="filings",
            filing=filing,
            step=step,
        )

    @post("/filings/{application_id:str}/steps")
    async def take_step(
        self,
        request: Req,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
    ) -> Redirect:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "clients:manage")
        application_id = _id(application_id, "application_not_found")
        data = _convert(
            partner_schemas.StepTake,
            {"step": form.get("step", ""), "reason": form.get("reason", "").strip()},
        )
        await PartnerService(platform).take_step(
            application_id, data.step, data.reason, session.operator.actor
        )
        return _see(f"{PATH}/filings/{application_id}?done=step")

    @post("/filings/{application_id:str}/credentials")
    async def rotate_credential(
        self,
        request: Req,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
    ) -> Response[str]:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "clients:manage")
        application_id = _id(application_id, "application_not_found")
        data = _convert(
            partner_schemas.CredentialCreate,
            {
                "kind": form.get("kind", ""),
                "jwk": _json_object(form.get("jwk", ""), "jwk"),
                "overlap_seconds": _optional_int(form.get("overlap_seconds", ""), "overlap"),
                "reason": form.get("reason", "").strip(),
            },
        )
        issued = await PartnerService(platform).add_credential(
            application_id, data, session.operator.actor
        )
        return await _filing_page(
            request, platform, session, application_id, issued=issued, status_code=201
        )

    @post("/filings/{application_id:str}/credentials/{credential_id:str}/end")
    async def end_credential(
        self,
        request: Req,
        application_id: FromPath[str],
        credential_id: FromPath[str],
        platform: NamedDependency[Platform],
    ) -> Redirect:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "clients:manage")
        application_id = _id(application_id, "application_not_found")
        credential_id = _id(credential_id, "credential_not_found")
        reason = form.get("reason", "").strip()[:500]
        await PartnerService(platform).end_credential(
            application_id, credential_id, session.operator.actor, reason
        )
        return _see(f"{PATH}/filings/{application_id}?done=credential")

    # --- terminals and institutions --------------------------------------------------------

    @get("/terminals")
    async def terminals(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        form = _query(request, "region", "status", "q", "page")
        if form["region"] and not _REGION.match(form["region"]):
            raise AppError("invalid_region_code", "region: six digits")
        if form["status"] not in ("", "active", "disabled"):
            raise AppError("validation_failed", "status: active or disabled")
        if len(form["q"]) > 64:
            raise AppError("validation_failed", "q: at most 64 characters")
        page = _page_number(form["page"])
        found = await (await _terminals(request)).search(
            region=form["region"] or None,
            status=form["status"] or None,
            kind=None,
            q=form["q"] or None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        return _page(
            request,
            platform,
            "terminals.html",
            session,
            section="terminals",
            form=form,
            found=found,
            page=page,
        )

    @get("/terminals/new")
    async def new_terminal(
        self, request: Req, platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "clients:manage")
        return _terminal_form(request, platform, session, {})

    @post("/terminals")
    async def register_terminal(
        self, request: Req, platform: NamedDependency[Platform]
    ) -> Response[Any]:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "clients:manage")
        try:
            data = _convert(
                terminal_schemas.TerminalCreate,
                {
                    "name": form.get("name", "").strip(),
                    "institution": form.get("institution", "").strip(),
                    "terminal_kind": form.get("terminal_kind", ""),
                    "address": form.get("address", "").strip(),
                    "region": form.get("region", "").strip(),
                    "public_jwk": _json_object(form.get("public_jwk", ""), "public_jwk"),
                    "entitlements": _list(form.get("entitlements", "card_status")),
                },
            )
            view = await (await _terminals(request)).register(data, session.operator.actor)
        except AppError as error:
            return _terminal_form(request, platform, session, form, error=error)
        return _see(f"{PATH}/terminals/{view.id}?done=registered")

    @get("/terminals/{terminal_id:str}")
    async def terminal(
        self, request: Req, terminal_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        terminal_id = _id(terminal_id, "terminal_not_found")
        terminals = await _terminals(request)
        view = await terminals.get(terminal_id)
        report = await terminals.reconciliation(terminal_id) if session.can("audit:read") else None
        return _page(
            request,
            platform,
            "terminal.html",
            session,
            section="terminals",
            terminal=view,
            report=report,
            notice="done" if _query(request, "done")["done"] else None,
        )

    @post("/terminals/{terminal_id:str}/status")
    async def terminal_status(
        self, request: Req, terminal_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Redirect:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "clients:manage")
        terminal_id = _id(terminal_id, "terminal_not_found")
        change = _convert(
            terminal_schemas.TerminalStatusChange,
            {"status": form.get("status", ""), "reason": form.get("reason", "").strip()},
        )
        await (await _terminals(request)).set_status(terminal_id, change, session.operator.actor)
        return _see(f"{PATH}/terminals/{terminal_id}?done=status")

    @get("/institutions")
    async def institutions(
        self, request: Req, platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        form = _query(request, "region", "q", "page", "done")
        page = _page_number(form["page"])
        query = parse_query(
            all_provinces(),
            region=form["region"] or None,
            q=form["q"] or None,
            page=page,
            limit=PAGE_SIZE,
        )
        found = await DirectoryService(platform).search_institutions(query)
        return _page(
            request,
            platform,
            "institutions.html",
            session,
            section="institutions",
            form=form,
            found=found,
            page=page,
            kinds=directory_catalogue.INSTITUTION_KINDS,
            notice="done" if form["done"] else None,
        )

    @get("/institutions/new")
    async def new_institution(
        self, request: Req, platform: NamedDependency[Platform]
    ) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:write")
        return _institution_form(request, platform, session, {})

    @post("/institutions")
    async def register_institution(
        self, request: Req, platform: NamedDependency[Platform]
    ) -> Response[Any]:
        session, form = await _posted(request, platform)
        require_permission(session.operator, "registry:write")
        try:
            data = _convert(
                directory_schemas.InstitutionIn,
                {
                    "uscc": form.get("uscc", "").strip().upper(),
                    "name_zh": form.get("name_zh", "").strip(),
                    "name_en": form.get("name_en", "").strip(),
                    "kind": form.get("kind", ""),
                    "address_zh": form.get("address_zh", "").strip(),
                    "address_en": form.get("address_en", "").strip(),
                    "region": form.get("region", "").strip(),
                    "lat": _number(form.get("lat", ""), "lat"),
                    "lon": _number(form.get("lon", ""), "lon"),
                    "scenarios": _list(form.get("scenarios", "")),
                    "media": _list(form.get("media", "")),
                    "terminals": [{"id": t} for t in _list(form.get("terminals", ""))],
                },
            )
            view = await DirectoryService(platform).create_institution(data, session.operator.actor)
        except AppError as error:
            return _institution_form(request, platform, session, form, error=error)
        return _see(f"{PATH}/institutions?done={view.entry.id}")

    @get("/packages")
    async def packages(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "registry:read")
        summary = await console.offline_package(code_service(request.app.state))
        return _page(
            request, platform, "packages.html", session, section="packages", package=summary
        )

    # --- audit -----------------------------------------------------------------------------

    @get("/audit")
    async def audit(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "audit:read")
        form = _query(request, "actor", "subject", "action", "since", "until", "page")
        filters = console.parse_audit_filters(form)
        page = _page_number(form["page"])
        found = await console.audit_trail(platform, filters, page)
        return _page(
            request,
            platform,
            "audit.html",
            session,
            section="audit",
            form=form,
            found=found,
            page=page,
        )

    @get("/statistics")
    async def statistics(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        """The province's use figures (``docs/statistics.md``): k-suppressed, no noise, as
        ``GET /operator/v1/statistics/usage`` answers the same role."""
        session = await _session(request, platform)
        require_permission(session.operator, "statistics:read")
        asked = _query(request, "days")["days"] or "30"
        if not asked.isdigit() or not 1 <= int(asked) <= MAX_DASHBOARD_DAYS:
            raise AppError("validation_failed", f"days: 1 to {MAX_DASHBOARD_DAYS}")
        dashboard = await render_dashboard(
            platform, regions=None, lang=_lang(request), days=int(asked)
        )
        return _page(
            request,
            platform,
            "statistics.html",
            session,
            section="statistics",
            dashboard=Markup(dashboard),  # noqa: S704 - render_dashboard escapes what it shows
            days=int(asked),
        )

    @get("/ledger")
    async def ledger(self, request: Req, platform: NamedDependency[Platform]) -> Response[str]:
        session = await _session(request, platform)
        require_permission(session.operator, "audit:read")
        anchors, counts = await console.recent_anchors()
        verified = None
        if _query(request, "verify")["verify"]:
            verified = await verify_ledger(platform)
        return _page(
            request,
            platform,
            "ledger.html",
            session,
            section="ledger",
            anchors=anchors,
            counts=counts,
            verified=verified,
        )


# --- helpers of several pages ----------------------------------------------------------------


async def _terminals(request: Req) -> TerminalService:
    return await provide_terminals(request.app.state)


def _number(raw: str, name: str) -> float | str:
    try:
        return float(raw)
    except ValueError:
        return raw  # the struct's validation names the field


def _login_page(
    request: Req,
    platform: Platform,
    *,
    error: AppError | None = None,
    username: str = "",
    pre: str = "",
) -> Response[str]:
    """The sign-in form, bound to a pre-session cookie (login CSRF); after a refusal, with its
    message, its status and, when throttled, ``Retry-After``."""
    pre = pre or new_pre_session()
    spec = CATALOGUE[error.code] if error else None
    retry = error.headers.get("Retry-After") if error else None
    response = _page(
        request,
        platform,
        "login.html",
        None,
        status_code=spec.status if spec else 200,
        cookies=[pre_session_cookie(platform, pre)],
        login_csrf=csrf_token(platform, pre, "login"),
        username=username,
        error=error,
        error_message=(spec.en if _lang(request) == "en" else spec.zh) if spec else None,
        retry_after=retry,
    )
    if retry:
        response.headers["Retry-After"] = retry
    return response


async def _filing_page(
    request: Req,
    platform: Platform,
    session: ConsoleSession,
    application_id: str,
    *,
    issued: partner_schemas.CredentialIssued | None = None,
    status_code: int = 200,
) -> Response[str]:
    application_id = _id(application_id, "application_not_found")
    partners = PartnerService(platform)
    filing = await partners.get(application_id)
    steps = await partners.history(application_id)
    manage = session.can("clients:manage")
    credentials = await partners.list_credentials(application_id) if manage else None
    return _page(
        request,
        platform,
        "filing.html",
        session,
        status_code=status_code,
        section="filings",
        filing=filing,
        steps=steps,
        credentials=credentials,
        issued=issued,
        notice="done" if _query(request, "done")["done"] else None,
    )


def _terminal_form(
    request: Req,
    platform: Platform,
    session: ConsoleSession,
    form: dict[str, str],
    error: AppError | None = None,
) -> Response[str]:
    return _form_page(
        request,
        platform,
        session,
        "terminal_new.html",
        "terminals",
        form,
        error,
        kinds=list(terminal_schemas.TerminalKind.__args__),  # type: ignore[attr-defined]
    )


def _institution_form(
    request: Req,
    platform: Platform,
    session: ConsoleSession,
    form: dict[str, str],
    error: AppError | None = None,
) -> Response[str]:
    return _form_page(
        request,
        platform,
        session,
        "institution_new.html",
        "institutions",
        form,
        error,
        kinds=directory_catalogue.INSTITUTION_KINDS,
        scenarios=directory_catalogue.SCENARIOS,
        media=directory_catalogue.MEDIA,
    )


def _form_page(
    request: Req,
    platform: Platform,
    session: ConsoleSession,
    template: str,
    section: str,
    form: dict[str, str],
    error: AppError | None,
    **context: Any,
) -> Response[str]:
    """A registration form, again with what was typed and the refusal's message when one came."""
    spec = CATALOGUE[error.code] if error else None
    return _page(
        request,
        platform,
        template,
        session,
        status_code=spec.status if spec else 200,
        section=section,
        form=defaultdict(str, {k: v for k, v in form.items() if k != CSRF_FIELD}),
        error=error,
        error_message=(spec.en if _lang(request) == "en" else spec.zh) if spec else None,
        **context,
    )


CONTROLLERS: list[Any] = [
    ConsoleController,
    create_static_files_router(path=STATIC_PATH, directories=[STATIC_DIR], include_in_schema=False),
]

__all__ = ["CONTROLLERS"]
