"""HTTP surface of the application catalogue (``/operator/v1/applications``): operators file
partner systems, take them through the workflow, list and search them, and rotate their
credentials.  Controllers only parse, authenticate, call the service and shape the response."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response

from ecard.auth import OperatorPrincipal, require_permission
from ecard.dependencies import operator_with, provide_operator
from ecard.idempotency import idempotent
from ecard.partners import schemas
from ecard.partners.service import PartnerService
from ecard.platform import Platform

IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Page = Annotated[int | None, QueryParameter(ge=1, le=100_000)]
Cursor = Annotated[str | None, QueryParameter(min_length=1, max_length=40)]
Text = Annotated[str | None, QueryParameter(max_length=128)]
StatusFilter = Annotated[schemas.Status | None, QueryParameter()]
CapabilityFilter = Annotated[schemas.Capability | None, QueryParameter()]
ReasonQuery = Annotated[str, QueryParameter(max_length=500)]


class ApplicationController(Controller):
    """应用目录备案: one filing per partner system (``docs/partners.md``)."""

    path = "/operator/v1/applications"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @post(
        "/",
        dependencies=operator_with("clients:manage"),
        summary="File a partner system (starts submitted; its secret is shown once)",
    )
    async def file(
        self,
        data: JSONBody[schemas.FilingCreate],
        request: Request[Any, Any, Any],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        idempotency_key: IdempotencyKey,
    ) -> Response[Any]:
        require_permission(operator, "clients:manage")
        return await idempotent(
            platform,
            operator.actor,
            idempotency_key,
            await request.body(),
            lambda: PartnerService(platform).file(data, operator.actor),
        )

    @get(
        "/",
        dependencies=operator_with("registry:read"),
        summary="List and search filings (status, capability, text; cursor or page)",
    )
    async def search(
        self,
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        status: StatusFilter = None,
        capability: CapabilityFilter = None,
        q: Text = None,
        cursor: Cursor = None,
        page: Page = None,
        limit: Limit = 50,
    ) -> schemas.FilingPage:
        require_permission(operator, "registry:read")
        return await PartnerService(platform).search(
            status=status, capability=capability, q=q, cursor=cursor, page=page, limit=limit
        )

    @get(
        "/{application_id:str}",
        dependencies=operator_with("registry:read"),
        summary="One filing",
    )
    async def get_one(
        self,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.FilingView:
        require_permission(operator, "registry:read")
        return await PartnerService(platform).get(application_id)

    @get(
        "/{application_id:str}/steps",
        dependencies=operator_with("registry:read"),
        summary="Who took each workflow step of a filing, and when",
    )
    async def history(
        self,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> list[schemas.StepView]:
        require_permission(operator, "registry:read")
        return await PartnerService(platform).history(application_id)

    @post(
        "/{application_id:str}/steps",
        status_code=200,
        dependencies=operator_with("clients:manage"),
        summary="Take one workflow step: assess, security_test, approve, go_live, suspend, …",
    )
    async def take_step(
        self,
        application_id: FromPath[str],
        data: JSONBody[schemas.StepTake],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.FilingView:
        require_permission(operator, "clients:manage")
        return await PartnerService(platform).take_step(
            application_id, data.step, data.reason, operator.actor
        )

    @post(
        "/{application_id:str}/credentials",
        status_code=201,
        dependencies=operator_with("clients:manage"),
        summary="Rotate: add a secret (shown once) or public key; earlier ones overlap, then end",
    )
    async def add_credential(
        self,
        application_id: FromPath[str],
        data: JSONBody[schemas.CredentialCreate],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> schemas.CredentialIssued:
        require_permission(operator, "clients:manage")
        return await PartnerService(platform).add_credential(application_id, data, operator.actor)

    @get(
        "/{application_id:str}/credentials",
        dependencies=operator_with("clients:manage"),
        summary="A filing's credentials (never a secret)",
    )
    async def list_credentials(
        self,
        application_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
    ) -> list[schemas.CredentialView]:
        require_permission(operator, "clients:manage")
        return await PartnerService(platform).list_credentials(application_id)

    @delete(
        "/{application_id:str}/credentials/{credential_id:str}",
        status_code=200,
        dependencies=operator_with("clients:manage"),
        summary="End one credential at once",
    )
    async def end_credential(
        self,
        application_id: FromPath[str],
        credential_id: FromPath[str],
        platform: NamedDependency[Platform],
        operator: NamedDependency[OperatorPrincipal],
        reason: ReasonQuery = "",
    ) -> schemas.CredentialView:
        require_permission(operator, "clients:manage")
        return await PartnerService(platform).end_credential(
            application_id, credential_id, operator.actor, reason
        )


CONTROLLERS: list[type[Controller]] = [ApplicationController]
