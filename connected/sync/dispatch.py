"""Which connected registries are due a sync now, and runs whose worker died.

Called by beat through connected.tasks.dispatch_due_syncs; `now` is passed
in so tests can drive the clock.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connected import schedule, validation
from connected.health_check import record_state
from connected.models import ConnectedRegistry, SyncRun

log = logging.getLogger(__name__)

UNFINISHED = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
# A queued run no worker picked up for this long is given up (broker lost it).
QUEUED_GIVE_UP = dt.timedelta(hours=1)


@dataclass(frozen=True)
class SyncFacts:
    """What the dispatcher knows of one connected registry's syncs and messages."""
    last_run: SyncRun | None = None  # the most recent run, of any kind
    last_full: SyncRun | None = None  # the most recent full comparison
    last_good_full_at: dt.datetime | None = None  # when the last successful full comparison was queued
    pending: int = 0  # sync messages waiting
    expired: int = 0  # sync messages that expired unapplied since the last successful full comparison
    wired: bool = False  # changes on both sides arrive as messages (see events_wired)


def decide(cr: ConnectedRegistry, facts: SyncFacts, now: dt.datetime) -> tuple[str, str] | None:
    """(trigger, scope) of the run cr is due now, or None when nothing is due.

    Continuous: a full comparison every CONTINUOUS_SYNC_INTERVAL seconds
    (polling) when changes do not arrive as messages, else every
    FULL_COMPARISON_INTERVAL seconds as the safety net, and at once when a
    message expired unapplied; pending messages in between.
    Scheduled: nothing outside a window. At a window's opening, the pending
    messages when they can be trusted (events wired, none expired, a
    successful full comparison within the message TTL), else a full
    comparison; then, inside the window, new messages as they come, and a
    failed run tried again."""
    portal = settings.PORTAL
    last = facts.last_run
    if last is not None and last.status in UNFINISHED:
        return None
    retry = dt.timedelta(seconds=portal["CONTINUOUS_SYNC_INTERVAL_SECONDS"])
    # After a failure, messages wait for the retry interval (no hot loop on a broken parent).
    backing_off = last is not None and last.status in (SyncRun.Status.FAILED, SyncRun.Status.PARTIAL) \
        and last.finished_at is not None and last.finished_at > now - retry
    if cr.is_continuous():
        interval = portal["FULL_COMPARISON_INTERVAL_SECONDS"] if facts.wired else portal[
            "CONTINUOUS_SYNC_INTERVAL_SECONDS"]
        full = facts.last_full
        if full is None or full.queued_at <= now - dt.timedelta(seconds=interval) \
                or (facts.expired and not backing_off):
            return SyncRun.Trigger.CONTINUOUS, SyncRun.Scope.FULL
        if facts.pending and not backing_off:
            return SyncRun.Trigger.MESSAGE, SyncRun.Scope.MESSAGES
        return None
    window = schedule.window_containing(cr.sync_schedule, cr.sync_window_delta(), now)
    if window is None:
        return None  # messages wait for the window
    start, _end = window
    ttl = validation.parse_duration(cr.message_ttl, "message_ttl")
    trusted = facts.wired and not facts.expired and facts.last_good_full_at is not None \
        and facts.last_good_full_at > now - ttl
    opening = last is None or last.queued_at < start
    failed = last is not None and last.status in (SyncRun.Status.FAILED, SyncRun.Status.PARTIAL,
                                                  SyncRun.Status.SKIPPED) \
        and last.finished_at is not None and last.finished_at <= now - retry
    if opening or failed:
        if not trusted:
            return SyncRun.Trigger.SCHEDULE, SyncRun.Scope.FULL
        return (SyncRun.Trigger.SCHEDULE, SyncRun.Scope.MESSAGES) if facts.pending else None
    if facts.pending and not backing_off:
        return SyncRun.Trigger.MESSAGE, SyncRun.Scope.MESSAGES
    return None


def due_trigger(cr: ConnectedRegistry, last_run: SyncRun | None, now: dt.datetime) -> str | None:
    """The trigger due now for a connected registry with no messages and no
    events wired, whose only run is last_run (see decide)."""
    decided = decide(cr, SyncFacts(last_run=last_run, last_full=last_run), now)
    return decided[0] if decided else None


def events_wired(cr: ConnectedRegistry) -> bool:
    """True when every change cr must apply arrives as a message: its parent
    side sends events (the registry's events arrive with its current secret,
    EventSource.is_delivering; a ReadOnly parent connected registry changes
    only through the portal's syncs, which send messages themselves) and, for
    a ReadWrite cr, cr itself sends them. A secret no event has come with yet
    proves nothing: the portal keeps polling until one does."""
    from connected.messages import EventSource, delivering

    def source(**where):
        return EventSource.objects.filter(**where).first()

    if cr.parent_id is None:
        parent_side = delivering(source(registry_id=cr.registry_id, connected_registry__isnull=True))
    else:
        parent_side = cr.parent.mode == ConnectedRegistry.Mode.READ_ONLY \
            or delivering(source(connected_registry_id=cr.parent_id))
    own_side = cr.mode == ConnectedRegistry.Mode.READ_ONLY or delivering(source(connected_registry_id=cr.pk))
    return parent_side and own_side


def facts_of(cr: ConnectedRegistry, now: dt.datetime) -> SyncFacts:
    runs = cr.runs.order_by("-queued_at", "-pk")
    fulls = runs.filter(scope=SyncRun.Scope.FULL)
    good = fulls.filter(status=SyncRun.Status.SUCCEEDED).values_list("queued_at", "started_at").first()
    messages = cr.messages.all()
    expired = messages.lost(now, good[1] if good else None)
    return SyncFacts(last_run=runs.first(), last_full=fulls.exclude(status=SyncRun.Status.SKIPPED).first(),
                     last_good_full_at=good[0] if good else None, pending=messages.pending(now).count(),
                     expired=expired.count(), wired=events_wired(cr))


def window_deadline(cr: ConnectedRegistry, trigger: str, now: dt.datetime) -> dt.datetime | None:
    """When a run started now must stop: the end of its window for a
    scheduled registry's runs (those of its schedule and the messages it
    applies inside a window), none for the others (a manual resync ignores
    windows)."""
    if trigger not in (SyncRun.Trigger.SCHEDULE, SyncRun.Trigger.MESSAGE) or cr.is_continuous():
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


def dispatch_one(cr: ConnectedRegistry, now: dt.datetime) -> SyncRun | None:
    """Queue the run cr is due now, if any (see decide). Returns it."""
    from connected.syncs import queue_sync

    # Web processes (events) and beat may dispatch one registry at the same
    # moment: its row, locked for the decision, lets one of them queue.
    with transaction.atomic():
        ConnectedRegistry.objects.select_for_update().filter(pk=cr.pk).first()
        decided = decide(cr, facts_of(cr, now), now)
        if decided is None or cr.is_sync_locked(now) or cr.sync_blockers():
            return None
        trigger, scope = decided
        return queue_sync(cr, trigger, scope=scope)


def dispatch_due(now: dt.datetime) -> list[SyncRun]:
    """Queue a run for every connected registry that is due one. Returns them."""
    fail_lost_runs(now)
    queued = []
    for cr in syncable():
        run = dispatch_one(cr, now)
        if run is not None:
            queued.append(run)
    return queued


def dispatch_now(pks) -> list[SyncRun]:
    """Queue at once the runs that the connected registries pks are due
    (new messages arrived for them), without waiting for beat."""
    now = timezone.now()
    queued = []
    for cr in syncable().filter(pk__in=list(pks)):
        try:
            run = dispatch_one(cr, now)
        except Exception:  # one refusal must not stop the others
            log.exception("dispatching %s failed", cr.name)
            continue
        if run is not None:
            queued.append(run)
    return queued
