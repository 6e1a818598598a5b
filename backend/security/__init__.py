"""Access control and audit: passwords, TOTP, tokens, roles, unit/share visibility, and the
hash-chained audit log. The FastAPI side is backend/api/deps.py."""
