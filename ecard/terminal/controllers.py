"""HTTP surface of terminals, grouped by audience: operators (register, disable, reconciliation),
terminals (the signed gateway: card authentication, cryptograms, codes, record uploads) and the
holder's app (a device certificate for the e-card over NFC).

Controllers parse, authenticate, call :class:`TerminalService` and shape the response.
"""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from ecard.auth import HolderPrincipal, OperatorPrincipal, require_permission
from ecard.codes import schemas as code_schemas
from ecard.codes.controllers import provide_codes
from ecard.dependencies import operator_with, provide_holder, provide_operator
from ecard.terminal import schemas
from ecard.terminal.service import TerminalPrincipal, TerminalService

NO_STORE = {"Cache-Control": "no-store"}


async def provide_terminals(state: State) -> TerminalService:
    """One service per worker, sharing the code service's caches (trust store, signers)."""
    codes = await provide_codes(state)
    service = state.get("terminal_service")
    if service is None or service.codes is not codes:
        service = state.terminal_service = TerminalService(state.platform, codes)
    return service


async def provide_terminal(
    request: Request, terminals: NamedDependency[TerminalService]
) -> TerminalPrincipal:
    """The calling terminal, from the signature over this very request."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await terminals.authenticate_request(
        request.headers.get("authorization"), request.method, target, await request.body()
    )


TERMINALS = {"terminals": Provide(provide_terminals)}


class OperatorTerminalController(Controller):
    path = "/operator/v1/terminals"
    tags = ["operator"]
    dependencies = {**TERMINALS, "operator": Provide(provide_operator)}

    @post(
        "/",
        dependencies=operator_with("clients:manage"),
        summary="Register an institution's terminal with its ES256 public key",
    )
    async def register(
        self,
        data: JSONBody[schemas.TerminalCreate],
        terminals: NamedDependency[TerminalService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.TerminalView:
        require_permission(operator, "clients:manage")
        return await terminals.register(data, operator.actor)

    @get(
        "/",
        dependencies=operator_with("registry:read"),
        summary="Search and page the registered terminals",
    )
    async def search(
        self,
        terminals: NamedDependency[TerminalService],
        operator: NamedDependency[OperatorPrincipal],
        region: Annotated[str | None, QueryParameter(pattern=r"^[1-9]\d{5}$")] = None,
        status: Annotated[Literal["active", "disabled"] | None, QueryParameter()] = None,
        kind: Annotated[str | None, QueryParameter(max_length=32)] = None,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=10_000_000)] = 0,
    ) -> schemas.TerminalPage:
        require_permission(operator, "registry:read")
        return await terminals.search(
            region=region, status=status, kind=kind, q=q, limit=limit, offset=offset
        )

    @get("/{terminal_id:str}", dependencies=operator_with("registry:read"))
    async def get_terminal(
        self,
        terminal_id: FromPath[str],
        terminals: NamedDependency[TerminalService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.TerminalView:
        require_permission(operator, "registry:read")
        return await terminals.get(terminal_id)

    @post(
        "/{terminal_id:str}/status",
        dependencies=operator_with("clients:manage"),
        status_code=200,
        summary="Disable (or re-enable) a terminal",
    )
    async def set_status(
        self,
        terminal_id: FromPath[str],
        data: JSONBody[schemas.TerminalStatusChange],
        terminals: NamedDependency[TerminalService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.TerminalView:
        require_permission(operator, "clients:manage")
        return await terminals.set_status(terminal_id, data, operator.actor)

    @get(
        "/{terminal_id:str}/reconciliation",
        dependencies=operator_with("audit:read"),
        summary="Offline records, gaps and anomalies of a terminal",
    )
    async def reconciliation(
        self,
        terminal_id: FromPath[str],
        terminals: NamedDependency[TerminalService],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.ReconciliationReport:
        require_permission(operator, "audit:read")
        return await terminals.reconciliation(terminal_id)


class TerminalGatewayController(Controller):
    """Every request is signed by the terminal's key (``Authorization: Terminal <JWS>``)."""

    path = "/terminal/v1"
    tags = ["terminal"]
    dependencies = {**TERMINALS, "terminal": Provide(provide_terminal)}

    @post(
        "/card-authentications", status_code=200, summary="卡鉴权: authenticate a chip card online"
    )
    async def authenticate_card(
        self,
        data: JSONBody[schemas.CardAuthenticationRequest],
        terminals: NamedDependency[TerminalService],
        terminal: NamedDependency[TerminalPrincipal],
    ) -> Response[schemas.CardAuthenticationResult]:
        return Response(await terminals.authenticate_card(terminal, data), headers=NO_STORE)

    @post(
        "/external-authentications",
        status_code=200,
        summary="The cryptogram that opens the chip's EF06",
    )
    async def external_authenticate(
        self,
        data: JSONBody[schemas.ExternalAuthenticationRequest],
        terminals: NamedDependency[TerminalService],
        terminal: NamedDependency[TerminalPrincipal],
    ) -> Response[schemas.ExternalAuthenticationResult]:
        return Response(await terminals.external_cryptogram(terminal, data), headers=NO_STORE)

    @post("/codes/verifications", status_code=200, summary="Accept a scanned QR code online")
    async def verify_code(
        self,
        data: JSONBody[schemas.CodeAcceptRequest],
        terminals: NamedDependency[TerminalService],
        terminal: NamedDependency[TerminalPrincipal],
    ) -> Response[code_schemas.VerificationResult]:
        return Response(await terminals.codes.verify(data.code, terminal.client), headers=NO_STORE)

    @post(
        "/records", status_code=200, summary="Upload signed offline acceptance records (idempotent)"
    )
    async def upload(
        self,
        request: Request,
        terminals: NamedDependency[TerminalService],
        terminal: NamedDependency[TerminalPrincipal],
    ) -> schemas.UploadReport:
        return await terminals.upload(terminal, await request.body())


class HolderHceController(Controller):
    path = "/holder/v1"
    tags = ["holder"]
    dependencies = {**TERMINALS, "holder": Provide(provide_holder)}

    @post(
        "/hce-certificates",
        status_code=201,
        summary="A device certificate for the e-card over NFC (HCE)",
    )
    async def provision(
        self,
        data: JSONBody[schemas.HceProvisionRequest],
        terminals: NamedDependency[TerminalService],
        holder: NamedDependency[HolderPrincipal],
    ) -> Response[schemas.HceProvisioned]:
        issued = await terminals.provision_hce(holder.ecard_id, holder.card_id, data)
        return Response(issued, status_code=201, headers=NO_STORE)


CONTROLLERS: list = [OperatorTerminalController, TerminalGatewayController, HolderHceController]
