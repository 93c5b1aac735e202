"""Operations on sync runs, shared by the CLI, the pages, the admin and beat:
queue a sync, cancel it, wait for it to end."""
from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .audit import SYSTEM, Actor, record
from .models import ConnectedRegistry, SyncRun

def queue_sync(cr: ConnectedRegistry, trigger: str = SyncRun.Trigger.MANUAL, actor: Actor | None = None,
               scope: str = SyncRun.Scope.FULL) -> SyncRun:
    """Record a queued run and hand it to a worker once the transaction
    commits. Manual requests are audited (scheduled runs are their own record)."""
    from .tasks import sync_connected_registry

    blockers = cr.sync_blockers()
    if blockers:
        raise ValidationError({"sync": [f"cannot sync '{cr.name}': {' '.join(blockers)}"]})
    with transaction.atomic():
        run = SyncRun.objects.create(connected_registry=cr, trigger=trigger, scope=scope)
        if trigger == SyncRun.Trigger.MANUAL:
            record(actor or SYSTEM, "connectedRegistry.resync", "connectedRegistry", cr.name, cr.registry.name,
                   {"run": [None, run.pk]})
    transaction.on_commit(lambda: sync_connected_registry.delay(run.pk))
    return run


def cancel_sync(cr: ConnectedRegistry, actor: Actor | None = None) -> SyncRun:
    """Cancel every queued or running sync of the connected registry. Queued
    runs end at once; a running one is asked to stop, and its worker stops
    within seconds, abandoning open uploads and writing no further tag.
    Returns the running run if there is one, else the latest cancelled."""
    unfinished = cr.runs.filter(status__in=(SyncRun.Status.QUEUED, SyncRun.Status.RUNNING))
    ids = list(unfinished.order_by("-queued_at", "-pk").values_list("pk", flat=True))
    if not ids:
        raise ValidationError({"sync": [f"no sync of '{cr.name}' is queued or running."]})
    with transaction.atomic():
        SyncRun.objects.filter(pk__in=ids, status=SyncRun.Status.QUEUED).update(
            status=SyncRun.Status.CANCELLED, finished_at=timezone.now(), error="cancelled before it started")
        SyncRun.objects.filter(pk__in=ids).update(cancel_requested=True)
        record(actor or SYSTEM, "connectedRegistry.cancelSync", "connectedRegistry", cr.name, cr.registry.name,
               {"runs": [ids, None]})
    runs = list(SyncRun.objects.filter(pk__in=ids).order_by("-queued_at", "-pk"))
    return next((r for r in runs if r.status == SyncRun.Status.RUNNING), runs[0])


def wait_for_run(run: SyncRun, timeout: float | None = None, poll: float = 0.5,
                 on_stuck_in_queue=None, stuck_after: float = 15.0) -> SyncRun:
    """Block until the run has finished (or timeout seconds pass); return it
    fresh. on_stuck_in_queue(run) is called once if it is still queued after
    stuck_after seconds (no worker took it: is one running?)."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    while True:
        run.refresh_from_db()
        if run.is_finished():
            return run
        if on_stuck_in_queue and run.status == SyncRun.Status.QUEUED and time.monotonic() - started > stuck_after:
            on_stuck_in_queue(run)
            on_stuck_in_queue = None
        if deadline is not None and time.monotonic() > deadline:
            return run
        time.sleep(poll)
