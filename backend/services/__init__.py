"""The domain services: everything the API (and the shell) does with stored records, one
module per resource, between storage and the routes.

The layers, and how to add a resource (a notification, a consent record, a device pool...):

1. `backend/storage/schema.py` and a migration: the table.
2. `backend/services/<resource>.py`: functions that take the request's connection, the
   caller's scope where the answer depends on who asks (a `SubjectAccess`, a `User`, or the
   SQL of the subjects the caller may see: `Visible.ids`), and plain values; they read and
   write with SQL and return rows or domain values. They never see HTTP: a refusal is a
   `Refused` (errors.py), which the API answers as 422, 409 or 404 with its sentence. Lists
   are one query for the page (or a fixed number), never one per row.
3. `backend/security/access.py` and `backend/api/deps.py`: who may reach it. An object that
   belongs to a subject is registered in `access.SUBJECT_OBJECTS` and guarded with
   `deps.object_scope(kind, scope)`; anything else gets a guard of its own in deps.py. No
   route decides access itself.
4. `backend/api/routes/<resource>.py`: the route module. Each route parses (pydantic models
   in backend/api/models_*.py; updates take `model_dump(exclude_unset=True)`, so a field the
   client leaves out is untouched and a nullable one sent as null is cleared), takes its
   guard, calls the service, records the audit entry and renders the answer. No SQL and no
   schema import: tests/backend/api/test_route_inventory.py fails otherwise, and fails if a
   route's id parameter is not guarded by the guard of the resource its path names.
5. `backend/api/routes/__init__.py`: one line in ROUTERS.
"""
