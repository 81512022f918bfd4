"""A teacher's screen served by an asyncio web framework, on the async API (`dala_events.aio`).

Starlette here (any asyncio framework will do; the package itself needs none): each request
awaits the store, so the event loop goes on serving other screens while PostgreSQL answers or
SQLite's worker thread works. Who made a change comes from the request (`recorded_as`, a
context variable: it holds across the awaits of the request that set it).

    pip install starlette uvicorn
    DALA_DATABASE_URL=sqlite:///database/dala.db uvicorn examples.web_app:app

    GET  /learners/{id}/interests            the learner's interests
    POST /learners/{id}/interests            {"interest": "Robotics"}, header X-Actor: teacher:7
    GET  /learners/{id}/history              who changed what, when
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dala_events import aio
from dala_events.attribution import recorded_as
from dala_events.errors import InvalidInput, LearnerErasedError, LearnerNotFound


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """One configured store for the application's loop (settings from DALA_* variables)."""
    app.state.dala = await aio.AsyncDala.open()
    try:
        yield
    finally:
        await app.state.dala.close()


def _store(request: Request) -> aio.AsyncEventStore:
    store: aio.AsyncEventStore = request.app.state.dala.store
    return store


async def interests(request: Request) -> JSONResponse:
    learner_id = request.path_params["learner_id"]
    found = await aio.get_interests(learner_id, store=_store(request))
    return JSONResponse([row.interest_name for row in found])


async def add_interest(request: Request) -> JSONResponse:
    learner_id = request.path_params["learner_id"]
    body: dict[str, Any] = await request.json()
    actor = request.headers.get("X-Actor", "")
    with recorded_as(actor or "unknown", reason="teacher's screen"):
        profile = await aio.get_or_create_learner_profile(learner_id, store=_store(request))
        added = await profile.add_interest(str(body.get("interest", "")))
    return JSONResponse({"added": added}, status_code=201 if added else 200)


async def history(request: Request) -> JSONResponse:
    learner_id = request.path_params["learner_id"]
    events = await aio.history(learner_id, store=_store(request))
    return JSONResponse(
        [
            {
                "version": event.version,
                "type": event.event_type,
                "at": event.recorded_at.isoformat(),
                "by": event.metadata.get("actor"),
                "why": event.metadata.get("reason"),
            }
            for event in events
        ]
    )


async def not_found(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=404)


async def gone(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=410)


async def refused(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidInput)
    return JSONResponse({"error": str(error), "field": error.field}, status_code=422)


app = Starlette(
    routes=[
        Route("/learners/{learner_id}/interests", interests, methods=["GET"]),
        Route("/learners/{learner_id}/interests", add_interest, methods=["POST"]),
        Route("/learners/{learner_id}/history", history, methods=["GET"]),
    ],
    # Looked up along the error's classes: an erased learner (a LearnerNotFound too) is "gone".
    exception_handlers={LearnerErasedError: gone, LearnerNotFound: not_found, InvalidInput: refused},
    lifespan=lifespan,
)
