"""The API's route modules, one per resource, each with its `router`: routes parse the
request, take their guard from backend/api/deps.py, call the resource's service
(backend/services/), record the audit entry and render the answer. No SQL and no storage
imports here (the route inventory test enforces both). backend/services/__init__.py says how
to add a resource.

`ROUTERS` is every router, in the order the app includes them; web.install() adds the
application's pages and health.install() the process's health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.routes import (
    alerts,
    assignments,
    audit,
    auth,
    brokers,
    charging,
    consent,
    curfews,
    events,
    exports,
    investigations,
    live,
    notifications,
    oncall,
    orders,
    outcomes,
    pool,
    reports,
    research,
    rules,
    shares,
    subjects,
    trail,
    units,
    users,
    victims,
    zones,
)

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    units.router,
    users.router,
    shares.router,
    audit.router,
    subjects.router,
    orders.router,
    outcomes.router,
    assignments.router,
    curfews.router,
    zones.router,
    charging.router,
    consent.router,
    pool.router,
    brokers.router,
    trail.router,
    alerts.router,
    rules.router,
    investigations.router,
    exports.router,
    reports.router,
    research.router,
    live.router,
    events.router,
    victims.router,
    oncall.router,
    notifications.router,
)
