"""A request's writes are committed before its answer leaves: a client that sends its next
request as soon as it has the answer (logout, then a read) must see them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from backend.security import roles
from tests.backend.api.conftest import bearer, login
from tests.backend.api.world import UNIT_A, World


def test_a_write_is_committed_before_the_response_is_sent(
    app: FastAPI, api_engine: Engine, world: World
) -> None:
    order: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def sent(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                order.append("response")
            await send(message)

        await app(scope, receive, sent)

    event.listen(api_engine, "commit", lambda conn: order.append("commit"))
    with TestClient(recording) as client:  # type: ignore[arg-type]
        token = login(client, world.user(UNIT_A, roles.OFFICER))
        order.clear()
        assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 204
        assert "commit" in order and order.index("commit") < order.index("response"), order
        assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401
