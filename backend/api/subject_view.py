"""What of a subject a caller is shown: the fields its access grants, nothing more. Every
route that returns a subject builds it with `subject_public(access)`, so a partner that a
share lets see a trail does not also get the owning unit's risk notes."""

from pydantic import BaseModel, Field

from backend.security import roles
from backend.security.access import SubjectAccess


class SubjectPublic(BaseModel):
    id: int
    reference: str
    name: str
    unit_id: int = Field(description="the owning unit")
    risk_notes: str | None = Field(
        default=None, description="only for the owning unit's supervisors and officers"
    )
    created_at: float
    owner: bool = Field(description="the caller's unit owns the subject")
    scopes: list[str] = Field(description="what the caller may do with this subject")


def subject_public(access: SubjectAccess) -> SubjectPublic:
    # Risk notes are operational intelligence of the owning unit: they go with MANAGE,
    # which never crosses units and which partner roles never hold.
    notes = access.risk_notes if access.owner and access.can(roles.MANAGE) else None
    return SubjectPublic(
        id=access.id,
        reference=access.reference,
        name=access.name,
        unit_id=access.unit_id,
        risk_notes=notes,
        created_at=access.created_at,
        owner=access.owner,
        scopes=sorted(access.scopes),
    )
