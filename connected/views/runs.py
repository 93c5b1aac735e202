"""Syncs: start one now, cancel the running one, and each run's page with
its progress and per-tag ledger."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404

from connected import syncs
from connected.models import SyncRun

from .base import action, actor, connected_registry_or_404, page, render_page
from .connected_registries import describe_progress, flat, live_response, seconds_text


@action
def sync_now(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    try:
        run = syncs.queue_sync(cr, SyncRun.Trigger.MANUAL, actor=actor(request))
    except ValidationError as e:
        return live_response(request, cr, errors=flat(e))
    return live_response(request, cr, notices=[f"Sync of {cr.name} queued (run {run.pk})."])


@action
def sync_cancel(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    try:
        run = syncs.cancel_sync(cr, actor=actor(request))
    except ValidationError as e:
        return live_response(request, cr, errors=flat(e))
    done = "cancelled" if run.status == SyncRun.Status.CANCELLED else "asked to stop"
    return live_response(request, cr, notices=[f"Run {run.pk} of {cr.name} {done}."])


def duration_text(run: SyncRun) -> str:
    """Wall time as '1h 02m 03s' / '2m 03s' / '3s'; empty before the run starts."""
    elapsed = run.duration()
    return "" if elapsed is None else seconds_text(elapsed.total_seconds())


@page
def run_detail(request, registry_name, name, run_id):
    cr = connected_registry_or_404(registry_name, name)
    run = get_object_or_404(cr.runs, pk=run_id)
    context = {
        "registry": cr.registry,
        "cr": cr,
        "run": describe_progress(run),
        "duration": duration_text(run),
        "ledger": run.tags.all(),
        "live": not run.is_finished(),
    }
    return render_page(request, "connected/run_detail.html", "connected/_run_live.html", context)
