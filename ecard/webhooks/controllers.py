"""HTTP surface of the webhooks domain: operators configure each client's endpoint and read (and
replay) the delivery log.  Controllers only parse, authenticate, call the service and shape the
response.  The delivery worker is declared with them in ``ecard.webhooks.domain``."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response

from ecard.auth import OperatorPrincipal, require_permission
from ecard.dependencies import operator_with, provide_operator
from ecard.platform import Platform
from ecard.webhooks import schemas
from ecard.webhooks.service import WebhookService

Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
ClientId = Annotated[str | None, QueryParameter(max_length=40)]


class OperatorWebhookController(Controller):
    path = "/operator/v1"
    tags = ["operator", "webhooks"]
    dependencies = {"operator": Provide(provide_operator)}

    @put(
        "/clients/{client_id:str}/webhook",
        dependencies=operator_with("clients:manage"),
        summary=(
            "Create (201, the signing secret shown once) or update (200) a client's webhook "
            "endpoint"
        ),
    )
    async def put_endpoint(
        self,
        client_id: FromPath[str],
        data: JSONBody[schemas.EndpointPut],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> Response[schemas.EndpointView]:
        require_permission(operator, "clients:manage")
        view, created = await WebhookService(platform).put_endpoint(client_id, data, operator.actor)
        return Response(view, status_code=201 if created else 200)

    @get(
        "/clients/{client_id:str}/webhook",
        dependencies=operator_with("clients:manage"),
        summary="A client's webhook endpoint (never its secret)",
    )
    async def get_endpoint(
        self,
        client_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.EndpointView:
        require_permission(operator, "clients:manage")
        return await WebhookService(platform).get_endpoint(client_id)

    @post(
        "/clients/{client_id:str}/webhook/rotate-secret",
        dependencies=operator_with("clients:manage"),
        status_code=200,
        summary=(
            "A new signing secret (shown once); the old one keeps signing beside it for "
            "overlap_seconds"
        ),
    )
    async def rotate_secret(
        self,
        client_id: FromPath[str],
        data: JSONBody[schemas.SecretRotation],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.EndpointView:
        require_permission(operator, "clients:manage")
        return await WebhookService(platform).rotate_secret(
            client_id, data.overlap_seconds, operator.actor
        )

    @get(
        "/webhook-deliveries",
        dependencies=operator_with("clients:manage"),
        summary="The webhook delivery log (paged, newest first)",
    )
    async def list_deliveries(
        self,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        client_id: ClientId = None,
        status: FromQuery[schemas.DeliveryStatus | None] = None,
        event_type: FromQuery[schemas.EventType | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.DeliveryPage:
        require_permission(operator, "clients:manage")
        return await WebhookService(platform).list_deliveries(
            client_id=client_id,
            status=status,
            event_type=None if event_type == "*" else event_type,
            limit=limit,
            offset=offset,
        )

    @post(
        "/webhook-deliveries/{delivery_id:str}/redeliver",
        dependencies=operator_with("clients:manage"),
        status_code=200,
        summary="Send a permanently failed delivery again (same webhook-id, fresh retries)",
    )
    async def redeliver(
        self,
        delivery_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.DeliveryView:
        require_permission(operator, "clients:manage")
        return await WebhookService(platform).redeliver(delivery_id, operator.actor)


CONTROLLERS = [OperatorWebhookController]

__all__ = ["CONTROLLERS"]
