"""HTTP surface of the holder's timeline: ``GET /holder/v1/timeline``."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from ecard.auth import HolderPrincipal
from ecard.dependencies import provide_holder
from ecard.platform import Platform
from ecard.timeline import schemas
from ecard.timeline.cursor import MAX_CURSOR_CHARS
from ecard.timeline.service import PAGE_MAX, TimelineService

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_MAX)]
Before = Annotated[str | None, QueryParameter(max_length=MAX_CURSOR_CHARS)]


class HolderTimelineController(Controller):
    path = "/holder/v1"
    tags = ["holder"]
    dependencies = {"holder": Provide(provide_holder)}

    @get(
        "/timeline",
        summary=(
            "Every use of every card I have held, newest first: verifications, terminal "
            "acceptances, logins, data reads under my grants, card status changes"
        ),
    )
    async def timeline(
        self,
        platform: NamedDependency[Platform],
        holder: NamedDependency[HolderPrincipal],
        limit: Limit = 50,
        before: Before = None,
    ) -> Response[schemas.TimelinePage]:
        page = await TimelineService(platform).timeline(holder, limit, before)
        return Response(page, headers=NO_STORE)


CONTROLLERS: list = [HolderTimelineController]
