"""structlog, configured once for the whole platform.

Lines go through the standard ``mlplatform`` logger, which ``dagster.yaml`` lists under
``managed_python_loggers``: Dagster then shows every line in the run's logs in the UI. Outside a terminal
each line is JSON; context bound with :func:`structlog.contextvars.bound_contextvars` (run id, asset,
partition) is merged into every line.
"""

from __future__ import annotations

import logging
import sys

import structlog

LOGGER_NAME = "mlplatform"


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
