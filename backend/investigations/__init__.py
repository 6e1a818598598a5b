"""Investigations: crime-scene correlation, evidence-grade exports and compliance reports
(docs/investigations.md)."""
