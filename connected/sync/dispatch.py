"""Which connected registries are due a sync now, and runs whose worker died.

Called by beat through connected.tasks.dispatch_due_syncs; `now` is passed
in so tests can drive the clock.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q

from connected import schedule
from connected.health_check import record_state
from connected.models import ConnectedRegistry, SyncRun

log = logging.getLogger(__name__)

UNFINISHED = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
# A queued run no worker picked up for this long is given up (broker lost it).
QUEUED_GIVE_UP = dt.timedelta(hours=1)


def due_trigger(cr: ConnectedRegistry, last_run: SyncRun | None, now: dt.datetime) -> str | None:
    """The trigger of the sync cr is due now ("continuous" or "schedule"), or
    None when nothing is due. last_run is its most recent run, if any."""
    if last_run is not None and last_run.status in UNFINISHED:
        return None
    if cr.is_continuous():
        interval = dt.timedelta(seconds=settings.PORTAL["CONTINUOUS_SYNC_INTERVAL_SECONDS"])
        if last_run is None or last_run.queued_at <= now - interval:
            return SyncRun.Trigger.CONTINUOUS
        return None
    window = schedule.window_containing(cr.sync_schedule, cr.sync_window_delta(), now)
    if window is None:
        return None
    start, _end = window
    if last_run is None or last_run.queued_at < start:
        return SyncRun.Trigger.SCHEDULE
    # Inside the window, a run that did not finish its work is tried again.
    retry = dt.timedelta(seconds=settings.PORTAL["CONTINUOUS_SYNC_INTERVAL_SECONDS"])
    if last_run.status in (SyncRun.Status.FAILED, SyncRun.Status.PARTIAL, SyncRun.Status.SKIPPED) \
            and last_run.finished_at and last_run.finished_at <= now - retry:
        return SyncRun.Trigger.SCHEDULE
    return None


def window_deadline(cr: ConnectedRegistry, trigger: str, now: dt.datetime) -> dt.datetime | None:
    """When a run started now must stop: the end of its window for a
    scheduled run, none for the others (a manual resync ignores windows)."""
    if trigger != SyncRun.Trigger.SCHEDULE or cr.is_continuous():
        return None
    window = schedule.window_containing(cr.sync_schedule, cr.sync_window_delta(), now)
    return window[1] if window else now


def syncable():
    """Connected registries that can sync: active, with a login server, their
    registry's data endpoint enabled."""
    return ConnectedRegistry.objects.select_related("registry", "parent").filter(
        activation_status=ConnectedRegistry.Activation.ACTIVE, registry__data_endpoint_enabled=True,
    ).exclude(login_server="")


def fail_lost_runs(now: dt.datetime) -> int:
    """Mark failed the running runs whose lease is gone (their worker died)
    and queued runs nobody picked up. Returns how many."""
    from .runner import lease_owner

    count = 0
    # A run claimed a moment ago may not hold its lease yet: give it one TTL.
    grace = dt.timedelta(seconds=settings.PORTAL["SYNC_LOCK_TTL_SECONDS"])
    running = SyncRun.objects.filter(status=SyncRun.Status.RUNNING, started_at__lt=now - grace)
    for run in running.select_related("connected_registry"):
        cr = run.connected_registry
        held = cr.sync_lock_owner == lease_owner(run) and cr.sync_lock_expires_at and cr.sync_lock_expires_at > now
        if not held:
            # If its worker was only stalled, it finds its lease gone and stops.
            ConnectedRegistry.objects.filter(pk=cr.pk, sync_lock_owner=lease_owner(run)).update(
                sync_lock_owner="", sync_lock_expires_at=None)
            count += SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
                status=SyncRun.Status.FAILED, finished_at=now,
                error="worker lost: the worker running this sync stopped answering")
            if ConnectedRegistry.objects.filter(pk=cr.pk, connection_state=ConnectedRegistry.ConnectionState.SYNCING) \
                    .exists():
                record_state(cr, ConnectedRegistry.ConnectionState.UNHEALTHY, [{
                    "type": "Sync", "code": "WorkerLost", "description": "the worker running a sync stopped answering",
                    "timestamp": now.isoformat().replace("+00:00", "Z")}])
    count += SyncRun.objects.filter(status=SyncRun.Status.QUEUED, queued_at__lt=now - QUEUED_GIVE_UP).update(
        status=SyncRun.Status.FAILED, finished_at=now, error="no worker picked this run up within an hour")
    return count


def prune_runs(now: dt.datetime, max_age: dt.timedelta, keep_last: int) -> int:
    """Delete finished runs (and their ledgers) older than max_age, except
    each connected registry's last keep_last runs. Returns how many went."""
    old = SyncRun.objects.filter(status__in=SyncRun.FINISHED, queued_at__lt=now - max_age)
    doomed = []
    for cr_id in old.values_list("connected_registry_id", flat=True).distinct():
        kept = SyncRun.objects.filter(connected_registry_id=cr_id).order_by("-queued_at", "-pk") \
            .values_list("pk", flat=True)[:keep_last]
        doomed += old.filter(connected_registry_id=cr_id).exclude(pk__in=list(kept)).values_list("pk", flat=True)
    deleted = 0
    for start in range(0, len(doomed), 500):  # SQLite limits the variables of one query
        deleted += SyncRun.objects.filter(pk__in=doomed[start:start + 500]).delete()[1].get("connected.SyncRun", 0)
    return deleted


def dispatch_due(now: dt.datetime) -> list[SyncRun]:
    """Queue a run for every connected registry that is due one. Returns them."""
    from connected.syncs import queue_sync

    fail_lost_runs(now)
    queued = []
    for cr in syncable():
        last_run = cr.runs.order_by("-queued_at", "-pk").first()
        trigger = due_trigger(cr, last_run, now)
        if trigger and not cr.is_sync_locked(now) and not cr.sync_blockers():
            queued.append(queue_sync(cr, trigger))
    return queued
