"""The status page for teams: every connected registry with its connection
state, last sync, next window and how far behind its parent it is. Read-only,
no secret, one query for the rows whatever their number, refreshing itself."""
from __future__ import annotations

from django.utils import timezone

from connected.models import ConnectedRegistry

from . import rows
from .base import page, render_page

REFRESH_SECONDS = 10


@page
def status(request):
    now = timezone.now()
    crs = rows.status_rows(ConnectedRegistry.objects.all(), now)
    counts = {state: 0 for state in ConnectedRegistry.ConnectionState.values}
    for cr in crs:
        counts[cr.connection_state] = counts.get(cr.connection_state, 0) + 1
    context = {"rows": crs, "counts": counts, "now": now, "refresh_seconds": REFRESH_SECONDS}
    return render_page(request, "connected/status.html", "connected/_status_rows.html", context)
