"""structlog, configured once for the whole platform.

Lines go through the standard ``mlplatform`` logger, which ``dagster.yaml`` lists under
``managed_python_loggers``: Dagster then shows every line in the run's logs in the UI. Outside a terminal
each line is JSON; context bound with :func:`structlog.contextvars.bound_contextvars` (run id, asset,
partition) is merged into every line.

Secrets never reach a line: :func:`redact` runs over every value (a libpq ``password=``, the password of a URL, the
value of each secret environment variable such as the alert webhook); code that puts text into an exception or
metadata calls it too.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import structlog

LOGGER_NAME = "mlplatform"
MASK = "***"
# Variables whose whole value is a secret (a webhook URL carries its token in its path).
SECRET_VARIABLES = (
    "MLPLATFORM_ALERT_WEBHOOK",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
    "DAGSTER_PG_PASSWORD",
)
_LIBPQ_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s\"]+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every secret it may carry replaced by ``***``: the value of a libpq ``password=``, the password
    of a ``scheme://user:password@host`` URL, and the value of each variable of :data:`SECRET_VARIABLES` set now."""
    for variable in SECRET_VARIABLES:
        value = os.environ.get(variable, "")
        if len(value) >= 4:  # shorter values would mask ordinary words
            text = text.replace(value, MASK)
    text = _LIBPQ_PASSWORD.sub(rf"\1{MASK}", text)
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text)


def _redact_values(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {key: _redacted(value) for key, value in event.items()}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def configure_logging() -> None:
    """Configure structlog; calling it again changes nothing."""
    if structlog.is_configured():
        return
    renderer = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_values,
            renderer,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)


def get_logger() -> structlog.typing.FilteringBoundLogger:
    configure_logging()
    return structlog.get_logger(LOGGER_NAME)
