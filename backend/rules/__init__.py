"""Monitoring rules: a pure, replayable engine over event time (engine.py), one module per
rule, and the parts that connect it to storage and ingest (store.py, sink.py).
docs/rules.md describes every rule, its parameters and the alert lifecycle."""
