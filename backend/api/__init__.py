"""The HTTP API: `backend.api.app.create_app` builds it; `backend.api.deps` holds the one
authorization dependency every route uses."""
