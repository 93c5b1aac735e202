"""Celery tasks (placeholder: being written)."""
from celery import shared_task


@shared_task
def sync_connected_registry(run_id: int):
    raise NotImplementedError


@shared_task
def dispatch_due_syncs():
    return 0
