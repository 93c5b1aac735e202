"""The per-connected-registry sync lock: a lease in the shared database.

Taking it is one conditional UPDATE, atomic on SQLite and PostgreSQL alike, so
it holds across any number of workers on any number of machines that share
the database. The holder renews it while it works; if the worker dies, the
lease expires after its TTL and the next sync may take it.
"""
from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone

from .models import ConnectedRegistry


class SyncLease:
    def __init__(self, connected_registry_id: int, owner: str, ttl_seconds: float):
        self.connected_registry_id = connected_registry_id
        self.owner = owner
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    def _mine(self):
        return ConnectedRegistry.objects.filter(pk=self.connected_registry_id, sync_lock_owner=self.owner)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it (or its holder's lease expired)."""
        now = timezone.now()
        free = Q(sync_lock_owner="") | Q(sync_lock_expires_at__isnull=True) | Q(sync_lock_expires_at__lt=now)
        taken = ConnectedRegistry.objects.filter(free, pk=self.connected_registry_id).update(
            sync_lock_owner=self.owner, sync_lock_expires_at=now + self.ttl)
        return taken == 1

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired and taken by another)."""
        return self._mine().update(sync_lock_expires_at=timezone.now() + self.ttl) == 1

    def release(self) -> None:
        self._mine().update(sync_lock_owner="", sync_lock_expires_at=None)
