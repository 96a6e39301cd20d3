"""Where run failure alerts go besides the logs."""

from __future__ import annotations

import dagster as dg


class AlertWebhook(dg.ConfigurableResource):
    """A URL that accepts a JSON POST per failed run (a chat relay, an incident tool); empty: logs only."""

    webhook_url: str = ""
