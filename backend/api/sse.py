"""The one Server-Sent Events loop the API's streams share (alerts, live positions): poll for
new items, re-check the caller's session every few seconds (a logout, revoked session or
disabled user ends the stream), and send a keep-alive comment when idle. What each stream
sends, and who may see it, is the `fetch` function's business."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from backend.api.deps import session_active
from backend.clock import Clock
from backend.security.access import User

# fetch(after_id, now) -> (cursor to continue from, [(event id, event name, body), ...])
Fetch = Callable[[int, float], tuple[int, list[tuple[int, str, dict[str, Any]]]]]


async def events(
    request: Request,
    engine: Engine,
    user: User,
    clock: Clock,
    fetch: Fetch,
    start: int,
    *,
    poll_s: float,
    session_check_s: float,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    last = start
    idle = 0.0
    checked = time.monotonic()
    yield b": stream open\n\n"
    while not await request.is_disconnected():
        if time.monotonic() - checked >= session_check_s:
            checked = time.monotonic()
            if not await run_in_threadpool(session_active, engine, user, clock.now()):
                yield b'event: end\ndata: {"reason": "session ended"}\n\n'
                return
        last, batch = await run_in_threadpool(fetch, last, clock.now())
        for event_id, name, body in batch:
            yield f"id: {event_id}\nevent: {name}\ndata: {json.dumps(body)}\n\n".encode()
        if batch:
            idle = 0.0
            continue
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= keepalive_s:
            idle = 0.0
            yield b": keep-alive\n\n"


def response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
