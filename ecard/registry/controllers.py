"""HTTP surface of the registry, grouped by audience: operators, channels, holders, departments.

Controllers only parse, authenticate, call the service and shape the response.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response

from ecard.auth import (
    ClientPrincipal,
    HolderPrincipal,
    OperatorPrincipal,
    dpop_context,
    require_permission,
)
from ecard.dependencies import client_of, operator_with, provide_holder, provide_operator
from ecard.idempotency import idempotent
from ecard.platform import Platform
from ecard.registry import schemas, sessions
from ecard.registry.card_life import CardLifeService
from ecard.registry.holder_password import HolderPasswords
from ecard.registry.service import AccessService, RegistryService

IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]


class OperatorAuthController(Controller):
    path = "/operator/v1"
    tags = ["operator"]

    @post("/login", status_code=200, summary="Operator login (username + password → bearer token)")
    async def login(
        self,
        data: JSONBody[schemas.LoginRequest],
        request: Request,
        platform: NamedDependency[Platform],
    ) -> schemas.OperatorToken:
        client_ip = request.client.host if request.client else "-"
        return await AccessService(platform).login(data, client_ip)


class OperatorRegistryController(Controller):
    path = "/operator/v1"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @post(
        "/persons",
        dependencies=operator_with("registry:write"),
        summary="Create a person (identity number validated, stored encrypted)",
    )
    async def create_person(
        self,
        data: JSONBody[schemas.PersonCreate],
        request: Request,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response:
        require_permission(operator, "registry:write")
        return await idempotent(
            platform,
            operator.actor,
            idempotency_key,
            await request.body(),
            lambda: RegistryService(platform).create_person(data, operator),
        )

    @get(
        "/persons",
        dependencies=operator_with("registry:read"),
        summary="Search persons (paged); by identity number or name only with pii:full",
    )
    async def search_persons(
        self,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        identity_number: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
        region: FromQuery[str | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.Page:
        require_permission(operator, "registry:read")
        return await RegistryService(platform).search_persons(
            operator,
            identity_number=identity_number,
            name=name,
            region=region,
            limit=limit,
            offset=offset,
        )

    @get("/persons/{person_id:str}", dependencies=operator_with("registry:read"))
    async def get_person(
        self,
        person_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.PersonView:
        require_permission(operator, "registry:read")
        return await RegistryService(platform).get_person(person_id, operator)

    @patch("/persons/{person_id:str}", dependencies=operator_with("registry:write"))
    async def update_person(
        self,
        person_id: FromPath[str],
        data: JSONBody[schemas.PersonUpdate],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.PersonView:
        require_permission(operator, "registry:write")
        return await RegistryService(platform).update_person(person_id, data, operator)

    @post(
        "/cards",
        dependencies=operator_with("registry:write"),
        summary="Register a physical card for a person",
    )
    async def create_card(
        self,
        data: JSONBody[schemas.CardCreate],
        request: Request,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response:
        require_permission(operator, "registry:write")
        return await idempotent(
            platform,
            operator.actor,
            idempotency_key,
            await request.body(),
            lambda: RegistryService(platform).create_card(data, operator),
        )

    @get("/cards", dependencies=operator_with("registry:read"))
    async def list_cards(
        self,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        person_id: FromQuery[str | None] = None,
        status: FromQuery[schemas.CardStatus | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.Page:
        require_permission(operator, "registry:read")
        return await RegistryService(platform).list_cards(
            operator, person_id=person_id, status=status, limit=limit, offset=offset
        )

    @get("/cards/{card_id:str}", dependencies=operator_with("registry:read"))
    async def get_card(
        self,
        card_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.CardView:
        require_permission(operator, "registry:read")
        return await RegistryService(platform).get_card(card_id, operator)

    @post(
        "/cards/{card_id:str}/status",
        dependencies=operator_with("registry:write"),
        status_code=200,
        summary="Change card status (挂失, 解挂, 冻结, 注销 …)",
    )
    async def change_status(
        self,
        card_id: FromPath[str],
        data: JSONBody[schemas.StatusChange],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.CardView:
        require_permission(operator, "registry:write")
        return await RegistryService(platform).change_card_status(
            card_id, data, operator.actor, operator
        )

    @get("/cards/{card_id:str}/history", dependencies=operator_with("registry:read"))
    async def card_history(
        self,
        card_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> list[schemas.StatusEventView]:
        require_permission(operator, "registry:read")
        return await RegistryService(platform).card_history(card_id, operator)

    @get(
        "/audit",
        dependencies=operator_with("audit:read"),
        summary="The audit trail (auditors and admins)",
    )
    async def audit_trail(
        self,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        target_id: FromQuery[str | None] = None,
        action: FromQuery[str | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.Page:
        require_permission(operator, "audit:read")
        return await RegistryService(platform).audit_trail(
            target_id=target_id, action=action, limit=limit, offset=offset
        )

    @post(
        "/clients",
        dependencies=operator_with("clients:manage"),
        summary="Register a channel, department, verifier, relying party or terminal",
    )
    async def create_client(
        self,
        data: JSONBody[schemas.ClientCreate],
        request: Request,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response:
        require_permission(operator, "clients:manage")
        return await idempotent(
            platform,
            operator.actor,
            idempotency_key,
            await request.body(),
            lambda: AccessService(platform).create_client(data, operator.actor),
        )

    @get("/clients/{client_id:str}", dependencies=operator_with("registry:read"))
    async def get_client(
        self,
        client_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.ClientView:
        require_permission(operator, "registry:read")
        return await AccessService(platform).get_client(client_id)

    @post("/logout", status_code=204, summary="End the calling operator token at once")
    async def logout(
        self, platform: NamedDependency[Platform], operator: NamedDependency[OperatorPrincipal]
    ) -> None:
        await AccessService(platform).logout(operator)

    @post(
        "/operators/{operator_id:str}/revoke-tokens",
        dependencies=operator_with("operators:manage"),
        status_code=200,
        summary="End every live token of an operator at once (admins; audited)",
    )
    async def revoke_operator_tokens(
        self,
        operator_id: FromPath[str],
        data: JSONBody[schemas.OperatorTokensRevoke],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.OperatorTokensRevoked:
        require_permission(operator, "operators:manage")
        return await AccessService(platform).revoke_operator_tokens(
            operator_id, data.reason, operator
        )

    @post(
        "/clients/{client_id:str}/status",
        dependencies=operator_with("clients:manage"),
        status_code=200,
    )
    async def set_client_status(
        self,
        client_id: FromPath[str],
        data: JSONBody[schemas.ClientStatusChange],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.ClientView:
        require_permission(operator, "clients:manage")
        return await AccessService(platform).set_client_status(client_id, data, operator.actor)


class ChannelController(Controller):
    path = "/channel/v1"
    tags = ["channel"]
    dependencies = {"channel": client_of("channel")}

    @post("/ecards", summary="签发: issue an e-card after matching name, identity number and card")
    async def issue_ecard(
        self,
        data: JSONBody[schemas.ECardIssue],
        request: Request,
        platform: NamedDependency[Platform],
        channel: NamedDependency[ClientPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response:
        return await idempotent(
            platform,
            channel.actor,
            idempotency_key,
            await request.body(),
            lambda: RegistryService(platform).issue_ecard(data, channel),
        )

    @post(
        "/ecards/{ecard_id:str}/unbind",
        status_code=200,
        summary="Unbind one e-card of this channel",
    )
    async def unbind(
        self,
        ecard_id: FromPath[str],
        platform: NamedDependency[Platform],
        channel: NamedDependency[ClientPrincipal],
    ) -> schemas.ECardView:
        service = RegistryService(platform)
        return await service.unbind_ecard(
            await service.channel_ecard(ecard_id, channel), channel.actor, "channel"
        )


class HolderController(Controller):
    path = "/holder/v1"
    tags = ["holder"]

    @get(
        "/ecard",
        dependencies={"holder": Provide(provide_holder)},
        summary="The holder's own e-card",
    )
    async def my_ecard(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> schemas.ECardView:
        return await RegistryService(platform).get_ecard(holder.ecard_id)

    @post(
        "/session/refresh",
        status_code=200,
        summary=(
            "Rotate the holder session's tokens (a DPoP-bound session: with a proof of its key)"
        ),
    )
    async def refresh(
        self,
        data: JSONBody[schemas.RefreshRequest],
        request: Request,
        platform: NamedDependency[Platform],
    ) -> schemas.TokenPair:
        return await RegistryService(platform).refresh_session(
            data.refresh_token, dpop_context(request)
        )

    @get(
        "/sessions",
        dependencies={"holder": Provide(provide_holder)},
        summary=(
            "The holder's signed-in sessions, in every channel app holding an e-card of the card"
        ),
    )
    async def my_sessions(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> list[schemas.HolderSessionView]:
        return await sessions.list_sessions(platform, holder)

    @post(
        "/sessions/{session_id:str}/revoke",
        status_code=204,
        dependencies={"holder": Provide(provide_holder)},
        summary="End one of the holder's sessions (any channel app of the same card)",
    )
    async def revoke_session(
        self,
        session_id: FromPath[str],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> None:
        await sessions.revoke_session(platform, holder, session_id)

    @post("/session/logout", status_code=204, dependencies={"holder": Provide(provide_holder)})
    async def logout(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> None:
        await RegistryService(platform).end_session(holder)

    @post("/ecard/unbind", status_code=200, dependencies={"holder": Provide(provide_holder)})
    async def unbind(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> schemas.ECardView:
        return await RegistryService(platform).unbind_ecard(holder.ecard_id, holder.actor, "holder")

    @get(
        "/password",
        dependencies={"holder": Provide(provide_holder)},
        summary="电子社保卡密码: set or not, locked until when",
    )
    async def password_state(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> schemas.HolderPasswordState:
        return await HolderPasswords(platform).state(holder)

    @post(
        "/password",
        dependencies={"holder": Provide(provide_holder)},
        summary="Set the 电子社保卡密码 (once per person)",
    )
    async def set_password(
        self,
        data: JSONBody[schemas.HolderPasswordSet],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.HolderPasswordState:
        return await HolderPasswords(platform).set_first(holder, data.password)

    @post(
        "/password/reset",
        status_code=200,
        dependencies={"holder": Provide(provide_holder)},
        summary="Reset the 电子社保卡密码 through the channel's 实人 evidence",
    )
    async def reset_password(
        self,
        data: JSONBody[schemas.HolderPasswordReset],
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
    ) -> schemas.HolderPasswordState:
        return await HolderPasswords(platform).reset(holder, data.password, data.evidence)


class DepartmentController(Controller):
    path = "/department/v1"
    tags = ["department"]
    dependencies = {"department": client_of("department")}

    @post(
        "/identity-checks",
        status_code=200,
        summary="实名实人实卡核验: do these belong together, what status",
    )
    async def check(
        self,
        data: JSONBody[schemas.IdentityCheckRequest],
        platform: NamedDependency[Platform],
        department: NamedDependency[ClientPrincipal],
    ) -> schemas.IdentityCheckResult:
        return await RegistryService(platform).check_identity(data, department)


class CardLifeController(Controller):
    """The card's life beyond a status change: 补领/换领 (operators), 临时挂失 and its undo
    (holders)."""

    tags = ["card life"]

    @post(
        "/operator/v1/cards/{card_id:str}/replacement-request",
        dependencies=operator_with("registry:write"),
        status_code=200,
        summary="补领/换领 requested: the card becomes replacement_pending (no 解挂 any more)",
    )
    async def request_replacement(
        self,
        card_id: FromPath[str],
        data: JSONBody[schemas.ReplacementRequest],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.CardView:
        require_permission(operator, "registry:write")
        return await RegistryService(platform).request_replacement(card_id, data, operator)

    @post(
        "/operator/v1/cards/{card_id:str}/replace",
        dependencies=operator_with("registry:write"),
        summary=(
            "The replacement: new card active, old card replaced, its e-cards moved with their ids"
        ),
    )
    async def replace(
        self,
        card_id: FromPath[str],
        data: JSONBody[schemas.Replacement],
        request: Request,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response:
        require_permission(operator, "registry:write")
        return await idempotent(
            platform,
            operator.actor,
            idempotency_key,
            await request.body(),
            lambda: CardLifeService(platform).replace(card_id, data, operator.actor),
        )

    @post(
        "/holder/v1/card/loss-report",
        status_code=200,
        dependencies={"holder": Provide(provide_holder)},
        summary="临时挂失 in the app: the card and every e-card stop at once; lapses by itself",
    )
    async def report_loss(
        self, platform: NamedDependency[Platform], holder: NamedDependency[HolderPrincipal]
    ) -> schemas.LossReported:
        return await CardLifeService(platform).report_loss(holder)

    @post(
        "/holder/v1/card/loss-report/undo",
        status_code=200,
        summary=(
            "Undo a 临时挂失: the session's refresh token"
            " (and DPoP proof where bound) + 电子社保卡密码"
        ),
    )
    async def undo_loss(
        self,
        data: JSONBody[schemas.LossUndo],
        request: Request,
        platform: NamedDependency[Platform],
    ) -> schemas.LossReported:
        return await CardLifeService(platform).undo_loss(data, dpop_context(request))


CONTROLLERS = [
    OperatorAuthController,
    CardLifeController,
    OperatorRegistryController,
    ChannelController,
    HolderController,
    DepartmentController,
]

__all__ = ["CONTROLLERS"]
