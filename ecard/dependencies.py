"""Litestar dependencies: the platform and the authenticated caller of each audience."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from ecard.auth import (
    ClientPrincipal,
    HolderPrincipal,
    OperatorPrincipal,
    authenticate_client,
    authenticate_holder,
    authenticate_operator,
    dpop_context,
    require_permission,
)
from ecard.platform import Platform


async def provide_platform(state: State) -> Platform:
    return state.platform


async def provide_operator(
    request: Request, platform: NamedDependency[Platform]
) -> OperatorPrincipal:
    return await authenticate_operator(platform, request.headers.get("authorization"))


async def provide_holder(request: Request, platform: NamedDependency[Platform]) -> HolderPrincipal:
    """The holder of the request's access token: a Bearer token, or a DPoP-bound token with its
    ``DPoP`` proof for this request (``ecard.auth.authenticate_holder``)."""
    return await authenticate_holder(
        platform, request.headers.get("authorization"), dpop_context(request)
    )


def client_of(*kinds: str) -> Provide:
    """A dependency yielding the calling machine client, refused unless it is one of ``kinds``."""

    async def provide_client(
        request: Request, platform: NamedDependency[Platform]
    ) -> ClientPrincipal:
        return await authenticate_client(platform, request.headers.get("authorization"), set(kinds))

    return Provide(provide_client)


PLATFORM = {"platform": Provide(provide_platform)}


def operator_with(permission: str) -> dict[str, Provide]:
    """The ``operator`` dependency, refused (403) unless the operator's role has ``permission``.

    Dependencies are resolved before the body is parsed, so a role without the permission gets
    403 whatever it sends, never a validation answer about a request it may not make."""

    async def provide(request: Request, platform: NamedDependency[Platform]) -> OperatorPrincipal:
        operator = await authenticate_operator(platform, request.headers.get("authorization"))
        require_permission(operator, permission)
        return operator

    return {"operator": Provide(provide)}
