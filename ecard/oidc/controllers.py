"""HTTP surface of the OpenID provider, grouped by audience: relying parties (OAuth endpoints),
the login page in the browser, the holder's app, and operators filing clients.

Controllers parse, call the provider's step modules (a :class:`Provider` first) and shape the
response.  Errors about the client or
its redirect URI are shown on a page; later authorization errors go back to the redirect URI.
"""

from __future__ import annotations

import time
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from litestar import Controller, Request, Response, get, post, route
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from ecard.auth import HolderPrincipal, OperatorPrincipal, bearer, require_permission
from ecard.codes.render import render_svg
from ecard.dependencies import operator_with, provide_holder, provide_operator
from ecard.errors import CATALOGUE, AppError, preferred_language
from ecard.http.responses import etagged
from ecard.oidc import (
    authorization,
    discovery,
    end_session,
    grants,
    holder_authorizations,
    introspection,
    login_session,
    revocation,
    schemas,
    userinfo,
)
from ecard.oidc.grants import device_code
from ecard.oidc.provider import Provider
from ecard.oidc.records import AuthorizationError, coarse_location
from ecard.oidc.scopes import SCOPES
from ecard.oidc.service import OidcService, basic_credentials
from ecard.platform import Platform
from ecard.web import PAGE_HEADERS, STATIC_DIR, STATIC_PATH, page, page_responses

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FLOW_COOKIE = "ecard_flow_"


def single_values(items: list[tuple[str, Any]]) -> dict[str, str]:
    """RFC 6749 §3.1: no parameter may appear twice; empty ones count as absent."""
    values: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in items:
        if not isinstance(value, str):
            raise AppError("invalid_request", f"{key} must be text")
        if key in seen:
            raise AppError("invalid_request", f"parameter {key} appears more than once")
        seen.add(key)
        if value != "":
            values[key] = value
    return values


async def form_of(request: Request) -> dict[str, str]:
    return single_values(list((await request.form()).multi_items()))


def origin_of(request: Request) -> schemas.LoginOrigin:
    ip = request.client.host if request.client else "-"
    return schemas.LoginOrigin(
        ip=ip,
        location=coarse_location(ip),
        user_agent=request.headers.get("user-agent", "")[:200],
        started_at=int(time.time()),
    )


def language(request: Request, ui_locales: str | None = None) -> str:
    for tag in (ui_locales or "").split():
        if tag.lower().startswith(("en", "zh")):
            return "en" if tag.lower().startswith("en") else "zh-CN"
    return preferred_language(request.headers.get("accept-language"))


def error_page(request: Request, error: AppError) -> Response[str]:
    spec = CATALOGUE[error.code]
    return page(
        "message.html",
        spec.status,
        lang=language(request),
        code=error.code,
        title_zh=spec.zh,
        title_en=spec.en,
        detail=error.detail,
    )


def flow_cookie(request: Request, flow_id: str | None) -> str | None:
    return request.cookies.get(f"{FLOW_COOKIE}{flow_id}") if flow_id else None


def same_origin(request: Request, issuer: str) -> None:
    """A browser's POST to the login page's endpoints must come from the page itself: the flow
    cookie is SameSite=Strict, and a sent ``Origin`` must be the issuer's (a sibling subdomain is
    the same site but not the same origin)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != issuer_origin(issuer):
        raise AppError("forbidden", "this request did not come from the login page")


def issuer_origin(issuer: str) -> str:
    parts = urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}"


def redirect(location: str) -> Redirect:
    return Redirect(location, status_code=303, headers=PAGE_HEADERS)


class DiscoveryController(Controller):
    tags = ["oidc"]

    @get("/.well-known/openid-configuration", summary="OpenID Provider metadata (OIDC Discovery)")
    async def configuration(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response:
        document = discovery.discovery(Provider(platform).issuer)
        return etagged(request, msgspec.json.encode(document), max_age=300)


class LoginPageController(Controller):
    """The browser side of scan-to-login."""

    path = "/oidc"
    tags = ["oidc"]
    include_in_schema = True

    @get(
        "/authorize",
        responses=page_responses(redirects=True),
        summary="Authorization endpoint: validates the request and shows the login QR",
    )
    async def authorize(self, request: Request, platform: NamedDependency[Platform]) -> Response:
        op = Provider(platform)
        try:
            params = single_values(list(request.query_params.multi_items()))
            client, asked = await authorization.validate_authorization(op, params)
            flow_id, browser_secret, session_id = await login_session.start_flow(
                op, asked, origin_of(request)
            )
        except AuthorizationError as refusal:
            return redirect(refusal.location)
        except AppError as error:
            return error_page(request, error)
        response = page(
            "login.html",
            lang=language(request, params.get("ui_locales")),
            session_id=session_id,
            flow_id=flow_id,
            client_name=client.name,
            client_logo=client.logo_uri,
            scopes=[SCOPES[s] for s in asked.scope.split()],
        )
        response.cookies.append(
            Cookie(
                key=f"{FLOW_COOKIE}{flow_id}",
                value=browser_secret,
                path="/oidc",
                httponly=True,
                samesite="strict",
                secure=op.issuer.startswith("https://"),
                max_age=op.policy.flow_ttl,
            )
        )
        return response

    @get("/login/{session_id:str}/qr.svg", summary="The login QR code (SVG)")
    async def qr(
        self, session_id: FromPath[str], platform: NamedDependency[Platform]
    ) -> Response[str]:
        text = await login_session.qr_text(Provider(platform), session_id)
        return Response(
            render_svg(text, scale=6), media_type="image/svg+xml", headers={**PAGE_HEADERS}
        )

    @get("/login/{session_id:str}/poll", summary="Long poll of the login state (until it changes)")
    async def poll(
        self,
        session_id: FromPath[str],
        request: Request,
        platform: NamedDependency[Platform],
        known: FromQuery[
            Literal["pending", "scanned", "approved_pending_confirmation"]
        ] = "pending",
        wait: FromQuery[bool] = True,
    ) -> Response[schemas.LoginPoll]:
        result = await login_session.poll(
            Provider(platform), session_id, lambda flow: flow_cookie(request, flow), known, wait
        )
        return Response(result, headers=NO_STORE)

    @post(
        "/flows/{flow_id:str}/renew",
        status_code=200,
        summary="A new QR for a page whose QR expired",
    )
    async def renew(
        self, flow_id: FromPath[str], request: Request, platform: NamedDependency[Platform]
    ) -> Response[schemas.RenewedLogin]:
        op = Provider(platform)
        session_id = await login_session.renew_session(op, flow_id, flow_cookie(request, flow_id))
        renewed = schemas.RenewedLogin(
            session_id=session_id,
            qr_svg_url=f"/oidc/login/{session_id}/qr.svg",
            expires_in=op.policy.login_session_ttl,
        )
        return Response(renewed, headers=NO_STORE)

    @post(
        "/login/{session_id:str}/confirm",
        status_code=200,
        summary="是本人: the browser confirms the approving holder; the code is issued",
    )
    async def confirm(
        self, session_id: FromPath[str], request: Request, platform: NamedDependency[Platform]
    ) -> Response[schemas.LoginContinuation]:
        op = Provider(platform)
        same_origin(request, op.issuer)
        location = await login_session.confirm(
            op, session_id, lambda flow: flow_cookie(request, flow)
        )
        return Response(schemas.LoginContinuation(location=location), headers=NO_STORE)

    @post(
        "/login/{session_id:str}/cancel",
        status_code=200,
        summary="不是我: the browser cancels the login; the client gets access_denied",
    )
    async def cancel(
        self, session_id: FromPath[str], request: Request, platform: NamedDependency[Platform]
    ) -> Response[schemas.LoginContinuation]:
        op = Provider(platform)
        same_origin(request, op.issuer)
        location = await login_session.cancel(
            op, session_id, lambda flow: flow_cookie(request, flow)
        )
        return Response(schemas.LoginContinuation(location=location), headers=NO_STORE)

    @get(
        "/login/{session_id:str}/continue",
        responses=page_responses(redirects=True),
        summary="Back to the relying party after a denial (an approval goes on through confirm)",
    )
    async def finish(
        self, session_id: FromPath[str], request: Request, platform: NamedDependency[Platform]
    ) -> Response:
        try:
            location = await login_session.finish(
                Provider(platform), session_id, lambda flow: flow_cookie(request, flow)
            )
        except AppError as error:
            return error_page(request, error)
        return redirect(location)

    @get(
        "/device",
        responses=page_responses(),
        summary="Where a device's user is sent: instructions to enter the code in the app",
    )
    async def device_page(
        self, request: Request, user_code: FromQuery[str | None] = None
    ) -> Response[str]:
        return page(
            "message.html",
            lang=language(request),
            code="device",
            user_code=(user_code or "")[:9],
            title_zh="设备登录",
            title_en="Log in on a device",
            body_zh="请打开电子社保卡 App，选择“扫码登录”，输入设备上显示的代码。",
            body_en=(
                "Open your e-card app, choose “Scan to log in” and enter the code shown on the"
                " device."
            ),
        )

    @route(
        "/logout",
        http_method=["GET", "POST"],
        status_code=200,
        responses=page_responses(redirects=True),
        summary="RP-initiated logout (end session endpoint)",
    )
    async def logout(self, request: Request, platform: NamedDependency[Platform]) -> Response:
        try:
            if request.method == "POST":
                params = await form_of(request)
            else:
                params = single_values(list(request.query_params.multi_items()))
            target = await end_session.end_session(Provider(platform), params)
        except AppError as error:
            return error_page(request, error)
        if target:
            return redirect(target)
        return page(
            "message.html",
            lang=language(request, params.get("ui_locales")),
            code="logged_out",
            title_zh="您已退出登录",
            title_en="You are signed out",
        )


class OAuthController(Controller):
    """What relying parties and devices call."""

    path = "/oidc"
    tags = ["oidc"]

    @post("/token", status_code=200, summary="Token endpoint: code, refresh and device grants")
    async def token(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response[schemas.TokenResponse]:
        form = await form_of(request)
        ip = request.client.host if request.client else "-"
        issued = await grants.token(
            Provider(platform), form, basic_credentials(request.headers.get("authorization")), ip
        )
        return Response(issued, headers=NO_STORE)

    @post("/device_authorization", status_code=200, summary="Device authorization (RFC 8628)")
    async def device_authorization(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response[schemas.DeviceAuthorization]:
        op = Provider(platform)
        form = await form_of(request)
        client = await op.clients.authenticate_client(
            form, basic_credentials(request.headers.get("authorization"))
        )
        return Response(
            await device_code.authorize_device(
                op,
                client,
                form.get("scope"),
                origin_of(request),
                form.get("authorization_details"),
            ),
            headers=NO_STORE,
        )

    @route(
        "/userinfo",
        http_method=["GET", "POST"],
        status_code=200,
        summary="Claims about the holder, by the token's scopes",
    )
    async def userinfo(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response[dict[str, Any]]:
        claims = await userinfo.userinfo(
            Provider(platform), bearer(request.headers.get("authorization"))
        )
        return Response(claims, headers=NO_STORE)

    @post("/revoke", status_code=200, summary="Token revocation (RFC 7009)")
    async def revoke(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response[dict[str, str]]:
        op = Provider(platform)
        form = await form_of(request)
        client = await op.clients.authenticate_client(
            form, basic_credentials(request.headers.get("authorization"))
        )
        if "token" not in form:
            raise AppError("invalid_request", "token is required")
        await revocation.revoke(op, client, form["token"])
        return Response({}, headers=NO_STORE)

    @post("/introspect", status_code=200, summary="Token introspection (RFC 7662)")
    async def introspect(
        self, request: Request, platform: NamedDependency[Platform]
    ) -> Response[schemas.Introspection]:
        op = Provider(platform)
        form = await form_of(request)
        client = await op.clients.authenticate_client(
            form, basic_credentials(request.headers.get("authorization"))
        )
        if "token" not in form:
            raise AppError("invalid_request", "token is required")
        return Response(await introspection.introspect(op, client, form["token"]), headers=NO_STORE)


class HolderLoginController(Controller):
    """The holder's app: what is this login, then approve or deny it."""

    path = "/holder/v1/logins"
    tags = ["holder"]
    dependencies = {"holder": Provide(provide_holder)}

    @get(
        "/{session_id:str}",
        summary="Who asks for what and from where (claims the session for this holder)",
    )
    async def describe(
        self,
        session_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.LoginSessionView:
        return await login_session.describe(Provider(platform), session_id, holder)

    @get("/", summary="A device login by the user code shown on the device")
    async def by_user_code(
        self,
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
        user_code: FromQuery[str | None] = None,
    ) -> schemas.LoginSessionView:
        if not user_code:  # checked here, after the holder: strangers learn nothing from a 400
            raise AppError("validation_failed", "user_code is required")
        return await login_session.describe_user_code(Provider(platform), user_code, holder)

    @post(
        "/{session_id:str}/approve",
        status_code=200,
        summary="Approve the login (with the 电子社保卡密码)",
    )
    async def approve(
        self,
        session_id: FromPath[str],
        data: JSONBody[schemas.LoginApproval],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.LoginAnswer:
        return await login_session.answer(
            Provider(platform),
            session_id,
            holder,
            approve=True,
            password=data.password,
            data_scopes=data.data_scopes,
        )

    @post("/{session_id:str}/deny", status_code=200, summary="Deny the login")
    async def deny(
        self,
        session_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.LoginAnswer:
        return await login_session.answer(Provider(platform), session_id, holder, approve=False)


class HolderAuthorizationController(Controller):
    """The holder's app: the sites they are logged in to and the grants they gave, in one list."""

    path = "/holder/v1/authorizations"
    tags = ["holder"]
    dependencies = {"holder": Provide(provide_holder)}

    @get("/", summary="Sites the holder is logged in to and the live grants they gave")
    async def list_authorizations(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> list[schemas.HolderAuthorization]:
        return await holder_authorizations.list_authorizations(Provider(platform), holder)

    @post(
        "/{kind:str}/{authorization_id:str}/revoke",
        status_code=200,
        summary="Revoke a login (its tokens at once) or a grant (recorded on the ledger)",
    )
    async def revoke(
        self,
        kind: FromPath[str],
        authorization_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.HolderAuthorization:
        return await holder_authorizations.revoke_authorization(
            Provider(platform), holder, kind, authorization_id
        )


class ClientFilingController(Controller):
    """应用目录备案: operators file relying parties, approve them and take them live."""

    path = "/operator/v1/oidc/clients"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @post(
        "/",
        dependencies=operator_with("clients:manage"),
        summary="File a relying party (starts pending; the secret is shown once)",
    )
    async def file(
        self,
        data: JSONBody[schemas.ClientFiling],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.ClientView:
        return await OidcService(platform).file_client(data, operator)

    @get("/{client_id:str}", summary="A filed relying party")
    async def get_client(
        self,
        client_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.ClientView:
        require_permission(operator, "registry:read")
        return (await OidcService(platform).filed_client(client_id)).view()

    @post(
        "/{client_id:str}/status",
        status_code=200,
        dependencies=operator_with("clients:manage"),
        summary="pending → approved → live; live ⇄ suspended; reject",
    )
    async def change_status(
        self,
        client_id: FromPath[str],
        data: JSONBody[schemas.ClientStatusChange],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.ClientView:
        return await OidcService(platform).change_client_status(client_id, data, operator)


CONTROLLERS: list = [
    DiscoveryController,
    LoginPageController,
    OAuthController,
    HolderLoginController,
    HolderAuthorizationController,
    ClientFilingController,
    create_static_files_router(path=STATIC_PATH, directories=[STATIC_DIR], include_in_schema=False),
]
