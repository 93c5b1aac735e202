"""A run's side of sync messages: take the pending ones, turn them into what
the engine syncs, and settle them when the run ends.

A messages run takes every pending message of its connected registry (it
holds the registry's lease, so no other run competes). A change named by
repository and tag is synced for that tag only; a change known by digest
only (distribution's delete of a manifest) has the whole repository
compared. When the run ends, the messages of repositories that went through
are acknowledged; those of a repository that failed, or of a run stopped
early, are released to wait (until they expire) for the next run. A full
comparison acknowledges every message that was waiting when it started.
"""
from __future__ import annotations

import datetime as dt

from django.utils import timezone

from connected.models import ConnectedRegistry, SyncMessage, SyncRun

from .engine import SyncResult


def take(cr: ConnectedRegistry, run: SyncRun, now: dt.datetime | None = None) -> list[SyncMessage]:
    pending = cr.messages.pending(now)
    ids = list(pending.values_list("pk", flat=True))
    SyncMessage.objects.filter(pk__in=ids).update(taken_by_run=run)
    return list(SyncMessage.objects.filter(pk__in=ids))


def scope(cr: ConnectedRegistry, messages: list[SyncMessage]) -> tuple[list[str], dict[str, set[str]]]:
    """(repositories to sync, in cr's order; the tags to limit each to, for
    those where every change names a tag)."""
    named = {m.repository for m in messages}
    repositories = [r for r in cr.repositories if r in named]
    whole = {m.repository for m in messages if not m.tag}
    only = {}
    for message in messages:
        if message.repository in repositories and message.repository not in whole:
            only.setdefault(message.repository, set()).add(message.tag)
    return repositories, only


def failed_repositories(result: SyncResult, repositories: list[str]) -> set[str]:
    """Repositories where something did not go through (a tag failed, or a listing did)."""
    failed = {t.repository for t in result.tags if t.outcome == "failed"}
    failed |= {r for r in repositories if any(e.startswith(f"{r}: ") for e in result.errors)}
    return failed


def settle(cr: ConnectedRegistry, run: SyncRun, result: SyncResult | None, messages: list[SyncMessage],
           now: dt.datetime | None = None) -> int:
    """Acknowledge what the run applied, release the rest (see the module
    docstring). For a full comparison, messages is empty and every message
    waiting when it started is considered. Returns how many were acknowledged."""
    now = now or timezone.now()
    if run.scope == SyncRun.Scope.FULL:
        candidates = cr.messages.pending(now).filter(created_at__lte=run.started_at)
        by = f"full comparison, run {run.pk}"
    else:
        candidates = SyncMessage.objects.filter(pk__in=[m.pk for m in messages], acknowledged_at__isnull=True)
        by = f"run {run.pk}"
    if result is None or result.stopped:
        candidates.filter(taken_by_run=run).update(taken_by_run=None)
        return 0
    synced = list(cr.repositories)
    failed = failed_repositories(result, synced)
    applied = candidates.exclude(repository__in=failed)
    acknowledged = applied.filter(repository__in=synced).update(acknowledged_at=now, acknowledged_by=by)
    acknowledged += applied.exclude(repository__in=synced).update(
        acknowledged_at=now, acknowledged_by=f"{by}: the repository is not synced")
    candidates.filter(repository__in=failed).update(taken_by_run=None)
    return acknowledged
