"""schemathesis as its command line runs it — every phase (the schema's examples, the
coverage phase's boundary and null values for every field, then random fuzzing), positive and
negative data — with the strictest checks that hold for this API; shared by the fuzz tests
(test_schemathesis.py over every operation, the investigations suite over staged data).

Every check schemathesis has runs, except four that cannot apply here, each replaced or
covered:
- `positive_data_acceptance` wants schema-valid requests accepted; some rules no JSON schema
  states (an end after a start, a date within ten years of backend now, a polygon that does
  not cross itself) refuse them with a 422 sentence. `model_agrees_with_schema` below holds
  what can hold: such data is never refused by a constraint the schema could have stated.
- `use_after_free`, `ensure_resource_availability` and `object_level_authorization` need
  stateful links between operations (the OpenAPI schema declares none); deletion and object
  access are tested by the authorization matrix and the route tests.

Runs are bounded (a few deterministic fuzzing examples per operation and mode, on top of the
coverage phase's fixed cases), so that the suite's time stays modest on a busy machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.engine import events, from_schema
from sqlalchemy import Engine

from backend.clock import ManualClock
from backend.registry import KeyVault, Registry
from backend.rules.evaluator import Changes
from backend.rules.model import Episode
from backend.rules.store import SqlRepository
from backend.storage.schema import TAG
from tests.backend.api.conftest import SERVER_KEY, bearer, login
from tests.backend.api.world import UNIT_A, World

NOT_APPLICABLE = [
    "positive_data_acceptance",
    "use_after_free",
    "ensure_resource_availability",
    "object_level_authorization",
]
_BOUNDS = {"less_than_equal", "less_than", "greater_than_equal", "greater_than"}


@schemathesis.check
def model_agrees_with_schema(ctx: Any, response: Any, case: Any) -> bool | None:
    """Data the schema allows (positive mode) is refused only by a rule the schema cannot
    state: a 422 with a sentence, or a field error of the models' own validators
    (`value_error`). A type, bound, length, pattern or choice error means the published
    schema and the model disagree; a 400, that the body it documents cannot be parsed."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code == 400:
        raise AssertionError(f"a schema-valid body could not be parsed: {response.text[:200]}")
    if response.status_code != 422:
        return None
    detail = response.json().get("detail")
    if isinstance(detail, str):
        return None
    stated = [e for e in detail if e.get("type") != "value_error" and not _tolerated(case, e)]
    if stated:
        raise AssertionError(f"the schema allows what the model refuses: {stated[:3]}")
    return None


def _tolerated(case: Any, error: dict[str, Any]) -> bool:
    """Two disagreements that are not the schema's: JSON Schema counts 2.0 as an integer,
    which the strict models refuse on purpose (an integer field takes a JSON integer,
    docs/security.md); and the generator compares integers beyond 2^53 as floats, so it
    takes 2^62 + 95 for "at most 2^62"."""
    if error["loc"][:1] != ["body"]:
        return False
    value: Any = case.body
    for key in error["loc"][1:]:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return False
    if error.get("type") == "int_type":
        return isinstance(value, float) and value.is_integer()
    return error.get("type") in _BOUNDS and isinstance(value, int) and abs(value) > 2**53


@dataclass
class Report:
    """What a run found: answers by status, and each (operation, check) that failed with
    its first message."""

    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        for code, n in other.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        for key, text in other.failures.items():
            self.failures.setdefault(key, text)
        self.errors += other.errors


def run(
    app: Any,
    headers: dict[str, str],
    include: str,
    exclude: str | None = None,
    parameters: dict[str, Any] | None = None,
    examples: int = 3,
    phases: tuple[str, ...] = ("examples", "coverage", "fuzzing"),
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> Report:
    """Every operation whose path matches `include` (and not `exclude`), authenticated with
    `headers`; `parameters` pins path and query values (the world's own objects); `phases`
    and `modes` as schemathesis names them, `examples` per operation in the fuzzing phase."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app).include(path_regex=include)
    if exclude is not None:
        schema = schema.exclude(path_regex=exclude)
    config = schema.config
    config.update(headers=headers, parameters=parameters, continue_on_failure=True)
    config.generation.update(modes=list(modes), max_examples=examples, deterministic=True)
    config.checks.update(excluded_check_names=NOT_APPLICABLE)
    config.phases.update(phases=list(phases))
    # No cache of what earlier runs learnt: each run the same, and nothing written to disk.
    config.cache.enabled = False
    report = Report()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    code = interaction.response.status_code
                    report.statuses[code] = report.statuses.get(code, 0) + 1
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        key = (event.recorder.label, check.name)
                        report.failures.setdefault(key, str(check.failure_info.failure)[:500])
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: {event.value!r}"[:500])
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}"[:500])
    return report


def own_objects(client: TestClient, world: World, engine: Engine, clock: ManualClock) -> Any:
    """Path ids of objects the world's unit A owns, one of each kind, made through the API
    (an alert through the rules' store)."""
    officer = bearer(login(client, world.user(UNIT_A, "officer")))
    subject = world.subjects["A-1"]
    now = int(clock.now())
    Registry(engine, KeyVault(bytes.fromhex(SERVER_KEY)), clock).register(1101, TAG)

    def made(path: str, body: dict[str, Any]) -> int:
        r = client.post(f"/api/subjects/{subject}/{path}", json=body, headers=officer)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    ids = {
        "subject_id": subject,
        "order_id": made("orders", {"kind": "bail", "reference": "O-1", "starts_at": now}),
        "assignment_id": made("assignments", {"device": 1101, "role": "tag", "starts_at": now}),
        "curfew_id": made("curfews", {"days": ["mon"], "start": "19:00", "end": "07:00"}),
        "exception_id": made(
            "curfew-exceptions",
            {"kind": "excused", "starts_at": now, "ends_at": now + 3600, "reason": "court"},
        ),
        "zone_id": made(
            "zones",
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-1.88, 50.72]},
                "properties": {"name": "z", "kind": "exclusion", "radius_m": 100},
            },
        ),
        "share_id": world.shares["A-2>B"],
        "unit_id": world.units[UNIT_A],
        "user_id": world.users[world.user(UNIT_A, "officer")][0],
    }
    with engine.begin() as conn:
        repo = SqlRepository(conn, clock.now())
        ep = Episode(subject, "tamper", "strap_tamper", "1", now - 60, 1, now - 60)
        repo.apply_episodes(Changes(raised=[ep]))
        ids["alert_id"] = repo.actions[0]
    return ids
