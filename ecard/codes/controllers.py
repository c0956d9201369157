"""HTTP surface of dynamic codes and 扫码亮证, grouped by audience: the holder's app, verifiers
(API and the service-hall page), and anyone fetching the offline kit's signed lists.

Controllers parse, authenticate, call :class:`CodeService` and shape the response.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp

from ecard.auth import (
    ClientPrincipal,
    DpopContext,
    HolderPrincipal,
    authenticate_client,
    authenticate_holder,
    bearer,
    dpop_context,
)
from ecard.codes import schemas
from ecard.codes.service import VERIFIER_SESSION_PREFIX, CodeService
from ecard.errors import AppError, rate_limited
from ecard.http.hot_routes import HotRoute, JsonReply
from ecard.http.responses import etagged, json_headers
from ecard.offline.es256 import public_jwk
from ecard.platform import Platform
from ecard.web import PAGE_HEADERS
from ecard.web.verifier import PAGE_HTML, STATIC_DIR

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
NO_STORE_JSON = json_headers(NO_STORE)
JOSE = "application/jose"
LIST_MAX_AGE = 60
IMAGE_RESPONSES = {
    200: ResponseSpec(
        bytes,
        media_type="image/*",
        description="PNG (default) or SVG (format=svg)",
        generate_examples=False,
    )
}
VERIFIER_LOGINS_PER_IP = (300, 30)  # window seconds, attempts

Scale = Annotated[int, QueryParameter(ge=1, le=32)]
Border = Annotated[int, QueryParameter(ge=0, le=16)]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
Version = Annotated[int, QueryParameter(ge=1, le=2**31 - 1)]


def code_service(state: State) -> CodeService:
    """One service per worker and platform, so its signers and caches live across requests."""
    service = state.get("code_service")
    if service is None or service.platform is not state.platform:
        service = state.code_service = CodeService(state.platform)
    return service


async def provide_codes(state: State) -> CodeService:
    return code_service(state)


async def provide_code_holder(
    request: Request, codes: NamedDependency[CodeService]
) -> HolderPrincipal:
    return await authenticate_holder(
        codes.platform, request.headers.get("authorization"), dpop_context(request)
    )


async def verifier_of(codes: CodeService, authorization: str | None) -> ClientPrincipal:
    """A verifier page session token, or the verifier's own credentials (Basic or
    private_key_jwt)."""
    token = bearer(authorization)
    if token and token.startswith(VERIFIER_SESSION_PREFIX):
        return await codes.verifier_of_session(token)
    return await authenticate_client(codes.platform, authorization, {"verifier"})


# What every holder and verifier call all day (a code, a verification) is served by
# ``ecard.app.EcardApp`` before Litestar's routing (``HOT_ROUTES``); the Litestar handlers below
# document them (and answer the same paths with a trailing slash).  Both call these functions.
_VERIFY_REQUEST = msgspec.json.Decoder(schemas.VerifyRequest)


async def issue_code(
    state: State, authorization: str | None, body: bytes = b"", dpop: DpopContext | None = None
) -> JsonReply:
    """A DPoP-bound holder token comes with its proof for this request (``dpop``)."""
    codes = code_service(state)
    holder = await authenticate_holder(codes.platform, authorization, dpop)
    return JsonReply(await codes.issue_code(holder), 201, NO_STORE_JSON)


async def verify_code(
    state: State, authorization: str | None, body: bytes | schemas.VerifyRequest
) -> JsonReply:
    """The caller is authenticated before its body is read: a stranger learns nothing of it."""
    codes = code_service(state)
    verifier = await verifier_of(codes, authorization)
    request = body if isinstance(body, schemas.VerifyRequest) else _verify_request(body)
    return JsonReply(await codes.verify(request.code, verifier), 200, NO_STORE_JSON)


def _verify_request(body: bytes) -> schemas.VerifyRequest:
    try:
        return _VERIFY_REQUEST.decode(body)
    except msgspec.ValidationError as exc:
        raise AppError("validation_failed", str(exc)) from None
    except msgspec.DecodeError:
        raise AppError("malformed_request", "the body is not JSON") from None


HOT_ROUTES = {
    # a code request has no body; a DPoP-bound token comes with its proof
    ("POST", "/holder/v1/codes"): HotRoute(issue_code, reads_body=False, dpop=True),
    ("POST", "/verifier/v1/verifications"): HotRoute(verify_code),
}


async def provide_page_login(
    request: Request, platform: NamedDependency[Platform]
) -> ClientPrincipal:
    """The verifier's credentials from the page.  A refusal carries no ``WWW-Authenticate``
    challenge: browsers answer one to ``fetch`` with their own login dialog, over the page."""
    try:
        return await authenticate_client(
            platform, request.headers.get("authorization"), {"verifier"}
        )
    except AppError as refusal:
        refusal.headers.pop("WWW-Authenticate", None)
        raise


CODES = {"codes": Provide(provide_codes)}


class HolderCodeController(Controller):
    path = "/holder/v1"
    tags = ["holder"]
    dependencies = {**CODES, "holder": Provide(provide_code_holder)}

    @post(
        "/codes",
        status_code=201,
        responses={
            201: ResponseSpec(schemas.CodeIssued, description="The code; show it until refresh_at")
        },
        summary="A fresh dynamic code (JSON): show until refresh_at",
    )
    async def issue(self, request: Request) -> ASGIApp:
        return await issue_code(
            request.app.state, request.headers.get("authorization"), dpop=dpop_context(request)
        )

    @get(
        "/codes/qr",
        responses=IMAGE_RESPONSES,
        summary="A fresh dynamic code as a QR image (PNG or SVG)",
    )
    async def image(
        self,
        codes: NamedDependency[CodeService],
        holder: NamedDependency[HolderPrincipal],
        # ``format`` shadows the builtin: it is the query parameter's name
        format: FromQuery[schemas.ImageFormat] = "png",
        scale: Scale = 8,
        border: Border = 4,
        ec: FromQuery[schemas.ErrorCorrectionLevel] = "M",
    ) -> Response[bytes]:
        issued = await codes.issue_code(holder)
        body = codes.render(issued.code, format, scale, border, ec)
        headers = {
            **NO_STORE,
            "X-Code-Expires-At": str(issued.expires_at),
            "X-Code-Refresh-At": str(issued.refresh_at),
        }
        media_type = "image/png" if format == "png" else "image/svg+xml"
        return Response(body, media_type=media_type, headers=headers)

    @get("/elicense", summary="The signed social security card e-license (电子证照)")
    async def elicense(
        self, codes: NamedDependency[CodeService], holder: NamedDependency[HolderPrincipal]
    ) -> Response[schemas.ElicenseIssued]:
        return Response(await codes.issue_elicense(holder), headers=NO_STORE)

    @get("/verifications", summary="Who verified my codes, when, with what result")
    async def history(
        self,
        codes: NamedDependency[CodeService],
        holder: NamedDependency[HolderPrincipal],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.HolderVerificationPage:
        return await codes.history(holder, limit, offset)


class VerifierController(Controller):
    path = "/verifier/v1"
    tags = ["verifier"]
    dependencies = CODES

    @post(
        "/session",
        status_code=200,
        dependencies={"verifier": Provide(provide_page_login)},
        summary="Exchange the verifier's credentials for a short-lived page session token",
    )
    async def session(
        self,
        request: Request,
        platform: NamedDependency[Platform],
        codes: NamedDependency[CodeService],
        verifier: NamedDependency[ClientPrincipal],
    ) -> Response[schemas.VerifierSession]:
        window, limit = VERIFIER_LOGINS_PER_IP
        client_ip = request.client.host if request.client else "-"
        decision = await platform.store.hit(f"vlogin:{client_ip}", window, limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after)
        return Response(await codes.open_verifier_session(verifier), headers=NO_STORE)

    @delete(
        "/session",
        status_code=204,
        summary="Log out of a page session: its token is refused from now on, on every worker",
    )
    async def logout(self, request: Request, codes: NamedDependency[CodeService]) -> None:
        token = bearer(request.headers.get("authorization"))
        if not token or not token.startswith(VERIFIER_SESSION_PREFIX):
            raise AppError("unauthenticated")  # no challenge: the page's fetch must not prompt
        await codes.close_verifier_session(token)  # an unknown or ended token: nothing to end

    @post(
        "/verifications",
        status_code=200,
        responses={
            200: ResponseSpec(
                schemas.VerificationResult,
                description="Valid with the entitled fields, or a reason",
            )
        },
        summary="Verify a scanned code online: valid with the entitled fields, or a reason",
    )
    async def verify(self, request: Request, data: JSONBody[schemas.VerifyRequest]) -> ASGIApp:
        return await verify_code(request.app.state, request.headers.get("authorization"), data)


class OfflineKitController(Controller):
    """Signed documents of the offline kit; public (pseudonyms and public keys only), with ETags."""

    path = "/offline/v1"
    tags = ["offline"]
    dependencies = CODES

    @get("/root-key", summary="The platform root public key (JWK) that signs every list")
    async def root_key(self, request: Request, platform: NamedDependency[Platform]) -> Response:
        root = platform.keys.ring.root
        body = {**public_jwk(root.public_key()), "kid": root.kid, "alg": "ES256", "use": "sig"}
        return etagged(request, msgspec.json.encode(body), max_age=3600)

    @get(
        "/trust-list",
        media_type=JOSE,
        summary="The signed trust list: every issuer's code-signing keys",
    )
    async def trust_list(self, request: Request, codes: NamedDependency[CodeService]) -> Response:
        await codes.publisher.federation.refresh()
        token = codes.publisher.trust_list_token()
        return etagged(request, token.encode(), max_age=LIST_MAX_AGE, media_type=JOSE)

    @get("/revocations", media_type=JOSE, summary="The latest signed revocation list (黑名单)")
    async def revocations(self, request: Request, codes: NamedDependency[CodeService]) -> Response:
        token = await codes.publisher.revocation_list_token()
        return etagged(request, token.encode(), max_age=LIST_MAX_AGE, media_type=JOSE)

    @get(
        "/revocations/{version:int}",
        media_type=JOSE,
        summary="The signed revocation list as it was at a version",
    )
    async def revocations_at(
        self, request: Request, version: FromPath[int], codes: NamedDependency[CodeService]
    ) -> Response:
        token = await codes.publisher.revocation_list_token(version)
        return etagged(request, token.encode(), max_age=LIST_MAX_AGE, media_type=JOSE)

    @get(
        "/revocations/delta",
        media_type=JOSE,
        summary="The signed delta from a version to the latest",
    )
    async def revocation_delta(
        self, request: Request, from_version: Version, codes: NamedDependency[CodeService]
    ) -> Response:
        token = await codes.publisher.revocation_delta_token(from_version)
        return etagged(request, token.encode(), max_age=LIST_MAX_AGE, media_type=JOSE)

    @get(
        "/package",
        media_type=JOSE,
        summary="The signed offline package for terminals (lists + limits)",
    )
    async def package(self, request: Request, codes: NamedDependency[CodeService]) -> Response:
        await codes.publisher.federation.refresh()
        token = await codes.publisher.offline_package_token()
        return etagged(request, token.encode(), max_age=LIST_MAX_AGE, media_type=JOSE)


class VerifierPageController(Controller):
    path = "/verifier"
    include_in_schema = False

    @get("/", summary="The service-hall verifier page (keyboard-wedge scanners)")
    async def page(self) -> Response[str]:
        return Response(PAGE_HTML, media_type=MediaType.HTML, headers=PAGE_HEADERS)


CONTROLLERS: list = [
    HolderCodeController,
    VerifierController,
    OfflineKitController,
    VerifierPageController,
    create_static_files_router(
        path="/verifier/static", directories=[STATIC_DIR], include_in_schema=False
    ),
]
