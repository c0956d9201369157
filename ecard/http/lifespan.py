"""The application's lifespan: the ``Platform`` (database, store, keys) opened at startup and
closed at shutdown, and the domains' background tasks (sealers, relays, workers) run in between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from litestar import Litestar

from ecard.platform import Platform, open_platform
from ecard.settings import Settings

#: ``background(platform)``: an async context manager a domain runs while the application serves
BackgroundTask = Callable[[Platform], AbstractAsyncContextManager[None]]


def platform_lifespan(
    settings: Settings,
    background_tasks: Sequence[BackgroundTask],
    platform: Platform | None = None,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A Litestar lifespan: sets ``app.state.platform`` (``platform``, or one opened from
    ``settings`` and closed at shutdown), then enters ``background_tasks`` in order, each left
    before the platform closes.  A ``platform`` passed in belongs to the caller and stays open."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = platform is None
        app.state.platform = platform or await open_platform(settings)
        try:
            async with AsyncExitStack() as background:
                for run in background_tasks:
                    await background.enter_async_context(run(app.state.platform))
                yield
        finally:
            if owned:
                await app.state.platform.close()

    return lifespan


__all__ = ["BackgroundTask", "platform_lifespan"]
