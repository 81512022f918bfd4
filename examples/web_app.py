"""A teacher's screen served by an asyncio web framework, on the async API (`dala_events.aio`).

Starlette here (any asyncio framework will do; the package itself needs none): each request
awaits the store, so the event loop goes on serving other screens while PostgreSQL answers or
SQLite's worker thread works. Who made a change comes from the request (`recorded_as`, a
context variable: it holds across the awaits of the request that set it).

From the project's folder, after `make demo` (the database and key store it filled are the
defaults, read from the DALA_* variables like every command's):

    .venv/bin/pip install -e '.[web]'        # Starlette and uvicorn
    .venv/bin/uvicorn examples.web_app:app
    curl localhost:8000/learners/student123/interests

    GET  /learners/{id}/interests            the learner's interests (404: no such learner)
    POST /learners/{id}/interests            {"interest": "Robotics"}, header X-Actor: teacher:7
                                             (400: the body is not a JSON object)
    GET  /learners/{id}/history              who changed what, when (404: no such learner)
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
    if not found:  # none, or no such learner: loading says which (LearnerNotFound, LearnerErasedError)
        await aio.AsyncLearnerProfile.load(learner_id, store=_store(request))
    return JSONResponse([row.interest_name for row in found])


class BadRequest(Exception):
    """The request's body is not what the route takes."""


async def add_interest(request: Request) -> JSONResponse:
    learner_id = request.path_params["learner_id"]
    try:
        body: Any = await request.json()
    except ValueError:  # not JSON at all (json.JSONDecodeError, UnicodeDecodeError)
        body = None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"interest": "Robotics"}')
    actor = request.headers.get("X-Actor", "")
    with recorded_as(actor or "unknown", reason="teacher's screen"):
        profile = await aio.get_or_create_learner_profile(learner_id, store=_store(request))
        added = await profile.add_interest(str(body.get("interest", "")))
    return JSONResponse({"added": added}, status_code=201 if added else 200)


async def history(request: Request) -> JSONResponse:
    learner_id = request.path_params["learner_id"]
    events = await aio.history(learner_id, store=_store(request))
    if not events:
        raise LearnerNotFound(learner_id, f"learner {learner_id!r} has no recorded changes")
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


async def bad_request(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=400)


app = Starlette(
    routes=[
        Route("/learners/{learner_id}/interests", interests, methods=["GET"]),
        Route("/learners/{learner_id}/interests", add_interest, methods=["POST"]),
        Route("/learners/{learner_id}/history", history, methods=["GET"]),
    ],
    # Looked up along the error's classes: an erased learner (a LearnerNotFound too) is "gone".
    exception_handlers={
        LearnerErasedError: gone,
        LearnerNotFound: not_found,
        InvalidInput: refused,
        BadRequest: bad_request,
    },
    lifespan=lifespan,
)
