"""Sync messages: changes a connected registry must apply, and where they come from.

A registry (the top-level one or a connected registry) that sends its
distribution webhook events to the portal is an EventSource, known by a
shared secret of which only a SHA-256 is kept (the secret is 32 random
bytes: a slow hash adds nothing). Each event is stored once as a
ReceivedEvent, keyed by its source and id (distribution resends until it
gets a 2xx). Each push or delete becomes a SyncMessage for every connected
registry it concerns (connected.events decides which); a message waits,
until created_at + that connected registry's message TTL, for a sync run or
the edge agent (the gateway API) to acknowledge it.

Status is derived, never stored: pending (not acknowledged, not expired),
applied (acknowledged) or expired (neither, and past expires_at).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

SECRET_BYTES = 32


def secret_digest(clear: str) -> str:
    return hashlib.sha256(clear.encode()).hexdigest()


class EventSource(models.Model):
    """A registry whose webhook events the portal accepts: the top-level
    registry (connected_registry None) or one connected registry."""

    registry = models.ForeignKey("connected.Registry", on_delete=models.CASCADE, related_name="event_sources")
    connected_registry = models.OneToOneField("connected.ConnectedRegistry", null=True, blank=True,
                                              on_delete=models.CASCADE, related_name="event_source")
    secret_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_event_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint("registry", condition=Q(connected_registry__isnull=True),
                                               name="one_event_source_per_registry")]

    def __str__(self):
        return f"events of {self.describe()}"

    def describe(self) -> str:
        """'registry R' or 'connected registry N', as messages name their origin."""
        if self.connected_registry_id:
            return f"connected registry {self.connected_registry.name}"
        return f"registry {self.registry.name}"

    def is_delivering(self) -> bool:
        """True once an event arrived with the current secret: the registry is
        configured with it. Until then (a secret made but not yet put into the
        registry's config, or replaced) its events cannot be relied on."""
        return self.last_event_at is not None and self.last_event_at >= self.created_at

    @classmethod
    def generate(cls, registry, connected_registry=None) -> tuple["EventSource", str]:
        """A new secret for the registry (replacing the old one, which stops
        working at once). Returns the source and the secret in clear: shown
        once, never stored."""
        clear = secrets.token_urlsafe(SECRET_BYTES)
        source, _ = cls.objects.update_or_create(
            registry=registry, connected_registry=connected_registry,
            defaults={"secret_sha256": secret_digest(clear), "created_at": timezone.now()})
        return source, clear

    @classmethod
    def authenticate(cls, clear: str | None) -> "EventSource | None":
        """The source whose secret this is, or None."""
        if not clear:
            return None
        digest = secret_digest(clear)
        source = cls.objects.select_related("registry", "connected_registry").filter(secret_sha256=digest).first()
        # The lookup is by an index; compare again in constant time anyway.
        if source is None or not hmac.compare_digest(source.secret_sha256, digest):
            return None
        return source


def delivering(source: "EventSource | None") -> bool:
    """Whether events from this source can be relied on: it exists and an
    event has arrived with its current secret (EventSource.is_delivering)."""
    return source is not None and source.is_delivering()


class ReceivedEvent(models.Model):
    """One distribution event, stored once per source and event id."""

    source = models.ForeignKey(EventSource, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=100)
    action = models.CharField(max_length=16)
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128, blank=True, default="")
    digest = models.CharField(max_length=150, blank=True, default="")
    actor = models.CharField(max_length=200, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    messages_created = models.PositiveIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True, default="", help_text="Why no message was made, if none was")

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [models.UniqueConstraint("source", "event_id", name="event_once_per_source")]

    def __str__(self):
        return f"{self.action} {self.repository}:{self.tag or self.digest} ({self.event_id})"


class SyncMessageQuerySet(models.QuerySet):
    def pending(self, now: dt.datetime | None = None):
        """Not acknowledged and not expired at now."""
        return self.filter(acknowledged_at__isnull=True, expires_at__gt=now or timezone.now())

    def expired(self, now: dt.datetime | None = None):
        """Never acknowledged, and past their expiry at now."""
        return self.filter(acknowledged_at__isnull=True, expires_at__lte=now or timezone.now())

    def lost(self, now: dt.datetime | None = None, full_comparison_started_at: dt.datetime | None = None):
        """Expired unapplied, with no full comparison since their change: the
        changes only a full comparison can still catch. A successful full
        comparison that started after a message was created saw its change."""
        expired = self.expired(now)
        if full_comparison_started_at is not None:
            expired = expired.filter(created_at__gt=full_comparison_started_at)
        return expired


class SyncMessage(models.Model):
    """A change a connected registry must apply."""

    class Action(models.TextChoices):
        PUSH = "push"
        DELETE = "delete"

    class Direction(models.TextChoices):
        DOWN = "down", "from the parent"
        UP = "up", "to the parent"

    connected_registry = models.ForeignKey("connected.ConnectedRegistry", on_delete=models.CASCADE,
                                           related_name="messages")
    event = models.ForeignKey(ReceivedEvent, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="messages")
    origin = models.CharField(max_length=200, help_text="Where the change happened")
    direction = models.CharField(max_length=4, choices=Direction.choices, default=Direction.DOWN)
    action = models.CharField(max_length=8, choices=Action.choices)
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128, blank=True, default="",
                           help_text="Empty for a change known by digest only (the whole repository is compared)")
    digest = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    taken_by_run = models.ForeignKey("connected.SyncRun", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="messages")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")

    objects = SyncMessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["connected_registry", "acknowledged_at", "expires_at"])]

    def __str__(self):
        return f"{self.action} {self.repository}:{self.tag or self.digest} for {self.connected_registry_id}"

    def status(self, now: dt.datetime | None = None) -> str:
        """'applied', 'expired' or 'pending'."""
        if self.acknowledged_at:
            return "applied"
        if self.expires_at <= (now or timezone.now()):
            return "expired"
        return "pending"

    def subject(self) -> str:
        """repo:tag, repo@digest for a change known by digest only, or the
        repository alone when the whole of it is to be compared."""
        if self.tag:
            return f"{self.repository}:{self.tag}"
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository} (every tag)"

    def as_json(self, now: dt.datetime | None = None) -> dict:
        """The message as the gateway API and `--output json` show it (status at now)."""
        def iso(value):
            return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None

        return {"id": self.pk, "action": self.action, "direction": self.direction, "repository": self.repository,
                "tag": self.tag or None, "digest": self.digest or None, "origin": self.origin,
                "createdAt": iso(self.created_at), "expiresAt": iso(self.expires_at), "status": self.status(now),
                "acknowledgedAt": iso(self.acknowledged_at)}


def prune_messages(now: dt.datetime, max_age: dt.timedelta) -> int:
    """Delete the sync messages applied, or expired, more than max_age before
    now, and the received events older than that which no pending message
    still comes from (never a pending message). Returns how many went."""
    cutoff = now - max_age
    # Filtering on the time each stopped waiting (acknowledged or expired) keeps a message
    # acknowledged a moment ago after a long TTL; expires_at < cutoff < now is never pending.
    done = SyncMessage.objects.filter(Q(acknowledged_at__lt=cutoff)
                                      | Q(acknowledged_at__isnull=True, expires_at__lt=cutoff))
    deleted = done.delete()[1].get("connected.SyncMessage", 0)
    still_waiting = SyncMessage.objects.pending(now).filter(event=models.OuterRef("pk"))
    old = ReceivedEvent.objects.filter(received_at__lt=cutoff).exclude(models.Exists(still_waiting)) \
        .values_list("pk", flat=True)
    doomed = list(old)
    for start in range(0, len(doomed), 500):  # SQLite limits the variables of one query
        deleted += ReceivedEvent.objects.filter(pk__in=doomed[start:start + 500]).delete()[1] \
            .get("connected.ReceivedEvent", 0)
    return deleted
