"""HTTP surface of stock cards (库存卡) and of death records (死亡人员), for operators.

Controllers only parse, authenticate, call the service and shape the response.
"""

from __future__ import annotations

import io
from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath, FromQuery, HeaderParameter
from litestar.response import Response

from ecard.auth import OperatorPrincipal, require_permission
from ecard.dependencies import operator_with
from ecard.errors import AppError, Problem
from ecard.idempotency import idempotent
from ecard.platform import Platform
from ecard.registry import schemas
from ecard.registry.deaths import API_MAX_ROWS, import_deaths
from ecard.registry.service import RegistryService
from ecard.registry.stock import StockService

IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)]
#: the body of a hand-over or an activation: optional
Step = Annotated[schemas.StockCardStep | None, Body()]


class StockCardController(Controller):
    """Batches of stock cards: made, delivered to an outlet, handed over, activated."""

    path = "/operator/v1"
    tags = ["stock cards"]

    @post(
        "/card-batches",
        dependencies=operator_with("registry:write"),
        summary="A batch of stock cards for one outlet (≤ 1000): all written as produced, or none",
    )
    async def create_batch(
        self,
        data: Annotated[schemas.CardBatchCreate, Body()],
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
            lambda: StockService(platform).create_batch(data, operator.actor),
        )

    @get(
        "/card-batches/{batch_id:str}",
        dependencies=operator_with("registry:read"),
        summary="A batch, with its cards per status",
    )
    async def get_batch(
        self,
        batch_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.CardBatchView:
        require_permission(operator, "registry:read")
        return await StockService(platform).get_batch(batch_id)

    @post(
        "/card-batches/{batch_id:str}/deliver",
        dependencies=operator_with("registry:write"),
        status_code=200,
        summary="The batch arrived at its outlet: every produced card becomes in_stock",
    )
    async def deliver(
        self,
        batch_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.CardBatchView:
        require_permission(operator, "registry:write")
        return await StockService(platform).deliver(batch_id, operator.actor)

    @post(
        "/cards/{card_id:str}/hand-over",
        dependencies=operator_with("registry:write"),
        status_code=200,
        summary="A stock card handed to its holder: in_stock → issued",
    )
    async def hand_over(
        self,
        card_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        data: Step = None,
    ) -> schemas.CardView:
        require_permission(operator, "registry:write")
        await StockService(platform).hand_over(
            card_id, data or schemas.StockCardStep(), operator.actor
        )
        return await RegistryService(platform).get_card(card_id, operator)

    @post(
        "/cards/{card_id:str}/activate",
        dependencies=operator_with("registry:write"),
        status_code=200,
        summary=(
            "A stock card activated (启用): issued → active, or in_stock → active at once "
            "(立等可取)"
        ),
    )
    async def activate(
        self,
        card_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        data: Step = None,
    ) -> schemas.CardView:
        require_permission(operator, "registry:write")
        await StockService(platform).activate(
            card_id, data or schemas.StockCardStep(), operator.actor
        )
        return await RegistryService(platform).get_card(card_id, operator)


class DeathRecordController(Controller):
    """死亡人员: a CSV of death records; every card of each person ends."""

    path = "/operator/v1"
    tags = ["card life"]

    @post(
        "/death-records",
        dependencies=operator_with("registry:write"),
        status_code=200,
        summary=(
            "Import death records (text/csv: identity_number,died_on,source_ref); the report by "
            "line"
        ),
        responses={
            415: ResponseSpec(
                Problem,
                description="The body is not text/csv (unsupported_media_type)",
                media_type="application/problem+json",
                generate_examples=False,
            )
        },
    )
    async def import_death_records(
        self,
        request: Request,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        dry_run: FromQuery[bool] = False,
    ) -> schemas.DeathImportReport:
        require_permission(operator, "registry:write")
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "text/csv":
            raise AppError("unsupported_media_type", "send the death records as text/csv")
        body = await request.body()  # bounded by the service's max_body_bytes
        return await import_deaths(
            platform,
            io.BytesIO(body),
            actor=operator.actor,
            actor_kind="operator",
            dry_run=dry_run,
            max_rows=API_MAX_ROWS,
        )


CONTROLLERS = [StockCardController, DeathRecordController]
