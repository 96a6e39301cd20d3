"""Run failure alerts: one structured event, posted as JSON to a webhook when one is configured."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from mlplatform.logs import get_logger

TIMEOUT_SECONDS = 5


def send_alert(event: dict[str, Any], webhook_url: str | None) -> bool:
    """Log ``event``; POST it to ``webhook_url`` when given. Whether the webhook accepted it (a failing
    webhook is logged, never raised: an alert must not fail the sensor that sends the next one)."""
    log = get_logger()
    log.error("run failed", **event)
    if not webhook_url:
        return False
    request = urllib.request.Request(
        webhook_url,
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, TimeoutError) as error:
        log.warning("alert webhook failed", url=webhook_url, error=str(error))
        return False
