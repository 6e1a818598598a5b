"""The one Server-Sent Events loop the API's streams share (alerts, live positions): poll for
new items, re-check the caller's session every few seconds (a logout, revoked session or
disabled user ends the stream), re-check each item's subject at the moment it is sent
(`StreamAccess.deliverable`, which also audits what is sent, per subject), and send a
keep-alive comment when idle. What each stream reads is the `fetch` function's business;
`stream` is a stream route's whole answer.

`LastEventId` is the `Last-Event-ID` header both streams resume from: ASCII digits, at most
`MAX_EVENT_ID` (the ids are database row ids); anything else is refused with 422 before the
stream starts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from backend.api.deps import StreamAccess
from backend.clock import Clock

# fetch(after_id, now) -> (cursor to continue from, [(event id, event name, body, subject
# id), ...])
Fetch = Callable[[int, float], tuple[int, list[tuple[int, str, dict[str, Any], int]]]]
MAX_EVENT_ID = 2**62
SESSION_CHECK_S = 5.0  # how often a stream re-checks the caller's session
KEEPALIVE_S = 15.0  # how long an idle stream waits before a keep-alive comment
# A stream never ends by itself, so a stopping server waits this long for open streams and
# then closes them; the browser reconnects (with Last-Event-ID) to a server that is up.
# Without it a restart waits until the service manager kills the process.
SHUTDOWN_GRACE_S = 5


def last_event_id(
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=19,
            pattern=r"^[0-9]+$",
            description=f"resume after this event id (0 to {MAX_EVENT_ID})",
        ),
    ] = None,
) -> int | None:
    if last_event_id is None:
        return None
    value = int(last_event_id)
    if value > MAX_EVENT_ID:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Last-Event-ID must be an event id of this stream, 0 to {MAX_EVENT_ID}",
        )
    return value


LastEventId = Annotated[int | None, Depends(last_event_id)]


async def stream(
    request: Request,
    clock: Clock,
    access: StreamAccess,
    fetch: Fetch,
    opened: Callable[[], int],
    *,
    poll_s: float,
) -> StreamingResponse:
    """A stream route's answer: 406 unless the client accepts text/event-stream; then
    `opened()`, which records the stream's opening and gives the cursor to start after, and
    the events from there, polling every `poll_s`."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise HTTPException(406, "this is a Server-Sent Events stream: Accept text/event-stream")
    # Off the event loop: waiting for SQLite's write lock here would block the loop that the
    # lock's holder (a request finishing its transaction) needs to commit.
    cursor = await run_in_threadpool(opened)
    return StreamingResponse(
        events(request, clock, access, fetch, cursor, poll_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def events(
    request: Request, clock: Clock, access: StreamAccess, fetch: Fetch, start: int, poll_s: float
) -> AsyncIterator[bytes]:
    last = start
    idle = 0.0
    checked = time.monotonic()
    yield b": stream open\n\n"
    while not await request.is_disconnected():
        if time.monotonic() - checked >= SESSION_CHECK_S:
            checked = time.monotonic()
            if not await run_in_threadpool(access.session_active, clock.now()):
                yield b'event: end\ndata: {"reason": "session ended"}\n\n'
                return
        last, batch = await run_in_threadpool(fetch, last, clock.now())
        if batch:
            # Now, after the read: an item read while a share stood is not sent once it ends.
            allowed = await run_in_threadpool(
                access.deliverable, {subject for *_, subject in batch}, clock.now()
            )
            for event_id, name, body, subject in batch:
                if subject in allowed:
                    yield f"id: {event_id}\nevent: {name}\ndata: {json.dumps(body)}\n\n".encode()
            idle = 0.0
            continue
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield b": keep-alive\n\n"
