"""Test routes that exercise every guard in backend/api/deps.py the way domain routes use
them (one per scope, an object of a subject, a list, a WebSocket stream), mounted on the
real app by the access tests, the route inventory and the authorization matrix."""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, WebSocket
from sqlalchemy import Connection, select

from backend.api.deps import (
    DB,
    ObjectAccess,
    SubjectAccess,
    Visible,
    object_guard,
    subject_scope,
    visible_subjects,
)
from backend.api.subject_view import SubjectPublic, subject_public
from backend.security import roles
from backend.storage.schema import subjects

# An "object of a subject": object id N belongs to subject N // 10 (10, 11.. -> subject 1).
OBJECTS_PER_SUBJECT = 10


def resolve_object(conn: Connection, object_id: int) -> int | None:
    subject_id = object_id // OBJECTS_PER_SUBJECT
    found = conn.execute(select(subjects.c.id).where(subjects.c.id == subject_id)).scalar()
    return int(found) if found is not None else None


def router() -> APIRouter:
    r = APIRouter(prefix="/probe", tags=["probe"])
    for scope in roles.SCOPES:

        def read(subject: Annotated[SubjectAccess, Depends(subject_scope(scope))]) -> SubjectPublic:
            return subject_public(subject)

        r.add_api_route(f"/subjects/{{subject_id}}/{scope}", read, methods=["GET"])

    @r.get("/objects/{object_id}")
    def read_object(
        obj: Annotated[
            ObjectAccess, Depends(object_guard("object_id", resolve_object, roles.ALERTS, "object"))
        ],
    ) -> dict[str, int]:
        return {"object_id": obj.object_id, "subject_id": obj.subject.id}

    @r.get("/subjects")
    def list_subjects(
        visible: Annotated[Visible, Depends(visible_subjects(roles.VIEW))], db: DB
    ) -> list[dict[str, object]]:
        rows = db.execute(select(subjects).where(visible.where(subjects.c.id)))
        return [{"id": s.id, "reference": s.reference} for s in rows]

    @r.websocket("/ws/subjects/{subject_id}/live")
    async def live(
        websocket: WebSocket,
        subject: Annotated[SubjectAccess, Depends(subject_scope(roles.LIVE))],
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"subject_id": subject.id, "reference": subject.reference})
        await websocket.close()

    return r


def mount(app: FastAPI) -> FastAPI:
    app.include_router(router())
    return app
