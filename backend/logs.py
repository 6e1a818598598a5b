"""structlog set-up for backend processes: one JSON object per line on stderr (or key=value
lines for a terminal), with a UTC timestamp and the level. Records from the standard
library's logging (uvicorn's server messages, with their logger's name) go through the same
renderer, so a service's journal is one format. Context bound with structlog.contextvars (the API's
request id, backend/api/request_metrics.py) is in every line logged while it is bound."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

JSON = "json"
KEYVALUE = "keyvalue"


def configure(fmt: str = KEYVALUE, level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == JSON
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"])
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
