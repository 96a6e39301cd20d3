"""Run failure alerts: one structured event, posted as JSON to a webhook when one is configured."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
from typing import Any

from mlplatform.logs import MASK, get_logger, redact

TIMEOUT_SECONDS = 5


def send_alert(event: dict[str, Any], webhook_url: str | None) -> bool:
    """Log ``event``; POST it to ``webhook_url`` when given. Whether the webhook accepted it (a failing
    webhook is logged, never raised: an alert must not fail the sensor that sends the next one)."""
    log = get_logger()
    # The event leaves the platform: no secret an error message quoted goes with it.
    event = {key: redact(value) if isinstance(value, str) else value for key, value in event.items()}
    log.error("run failed", **event)
    if not webhook_url:
        return False
    try:
        request = urllib.request.Request(
            webhook_url,
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError, http.client.HTTPException) as error:
        # The URL is a secret (its path is the token): only its host is logged, and the error without it
        # (a malformed URL's ValueError quotes the whole of it).
        said = str(error).replace(webhook_url, MASK)
        log.warning("alert webhook failed", webhook_host=_host(webhook_url), error=said)
        return False


def _host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
