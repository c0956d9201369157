"""granian's RSGI worker hooks run the application's ASGI lifespan (ecard.rsgi.Lifespan)."""

from __future__ import annotations

import asyncio

import pytest

from ecard.rsgi import Lifespan


def lifespan_app(events: list[str], fail_startup: bool = False):  # type: ignore[no-untyped-def]
    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        assert scope["type"] == "lifespan"
        assert (await receive())["type"] == "lifespan.startup"
        if fail_startup:
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            return
        events.append("started")
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        events.append("stopped")
        await send({"type": "lifespan.shutdown.complete"})

    return app


def test_the_worker_hooks_start_and_stop_the_application() -> None:
    events: list[str] = []
    lifespan = Lifespan(lifespan_app(events))
    loop = asyncio.new_event_loop()
    try:
        lifespan.startup(loop)
        assert events == ["started"]
        lifespan.shutdown(loop)
        assert events == ["started", "stopped"]
    finally:
        loop.close()


@pytest.mark.parametrize("fail_how", ["reported", "raised"])
def test_a_failed_startup_stops_the_worker(fail_how: str) -> None:
    """granian lets the worker die when its init hook raises: it must not serve half started."""

    async def raising(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("no database")

    app = lifespan_app([], fail_startup=True) if fail_how == "reported" else raising
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="no database"):
            Lifespan(app).startup(loop)
    finally:
        loop.close()
