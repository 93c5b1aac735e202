"""Celery tasks: thin wrappers around connected.sync."""
from celery import shared_task
from django.utils import timezone


@shared_task(acks_late=True, ignore_result=True)
def sync_connected_registry(run_id: int) -> str:
    """Carry out one queued sync run (see connected.sync.runner.execute_run)."""
    from connected.models import SyncRun
    from connected.sync.dispatch import window_deadline
    from connected.sync.runner import execute_run

    run = SyncRun.objects.select_related("connected_registry").filter(pk=run_id).first()
    if run is None:
        return "missing"
    deadline = window_deadline(run.connected_registry, run.trigger, timezone.now())
    worker = getattr(sync_connected_registry.request, "hostname", None) or ""
    return execute_run(run_id, worker=worker, deadline=deadline).status


@shared_task(ignore_result=True)
def dispatch_due_syncs() -> int:
    """Beat: queue the syncs that are due, fail runs whose worker died."""
    from connected.sync.dispatch import dispatch_due

    return len(dispatch_due(timezone.now()))


@shared_task(ignore_result=True)
def prune_runs() -> int:
    """Beat: delete old runs, keeping each connected registry's most recent
    ones, and the sync messages applied or expired and the registry events
    received longer ago than the same retention (never a pending message).
    Returns how many rows went."""
    import datetime as dt

    from django.conf import settings

    from connected.messages import prune_messages
    from connected.sync.dispatch import prune_runs as prune

    portal = settings.PORTAL
    now, max_age = timezone.now(), dt.timedelta(days=portal["RUN_RETENTION_DAYS"])
    return prune(now, max_age, portal["RUNS_KEPT_PER_REGISTRY"]) + prune_messages(now, max_age)


@shared_task(ignore_result=True)
def check_health() -> int:
    """Beat: probe every connected registry and keep its connection state true."""
    from connected.health_check import check_all

    return check_all()
