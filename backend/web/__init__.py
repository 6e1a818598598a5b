"""The officers' web application: static pages, settings, the world layer and demo
accounts. backend/api/routes/web.py serves it; docs/web.md describes it."""
