"""Structured JSON logs: one line per event, on stdout, for the service and its libraries."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
import structlog.tracebacks

# Values under these keys never reach a log line, whoever passes them.
_SECRET_KEYS = ("token", "secret", "password", "credential", "authorization", "api_key")


def _redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    for key in list(event):
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "INFO") -> None:
    """Route structlog and stdlib logging (uvicorn, SQLAlchemy) to one JSON stream."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Locals of a failing frame can hold a bearer token or a candidate's words.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings become JSON log lines too
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The request middleware logs each request once, as JSON; uvicorn's own access line would
    # be a second, unstructured copy.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic narrates every start ("Context impl SQLiteImpl", ...); its warnings still show, and
    # interview.store logs what it migrated.
    logging.getLogger("alembic").setLevel(logging.WARNING)
