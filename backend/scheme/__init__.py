"""The voluntary scheme around the monitoring: consent and its withdrawal (consent.py), the
wearer's own data (subject_access.py) and the unit's tag pool (pool.py)."""
