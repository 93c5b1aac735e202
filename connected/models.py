"""Registries, connected registries and their sync runs.

The models derive their state (see the methods with docstrings); the rules
that values must follow live in connected.validation, which clean() calls.
Sync tokens and scope maps live in connected.access, the audit trail in
connected.audit; both are imported at the end of this module so Django (and
`from connected.models import ...`) finds them here.
"""
from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from . import validation


class Registry(models.Model):
    """The top-level parent: an OCI registry endpoint the portal manages."""

    name = models.CharField(max_length=50)
    login_server = models.CharField(max_length=255, help_text="URL of its OCI endpoint, e.g. http://127.0.0.1:5001")
    data_endpoint_enabled = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "registries"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="registry_name_unique_ci")]

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        for field, check in (("name", validation.validate_name),
                             ("login_server", validation.validate_login_server)):
            try:
                setattr(self, field, check(getattr(self, field)))
            except ValidationError as e:
                errors.update(e.message_dict)
        clash = Registry.objects.filter(name__iexact=self.name).exclude(pk=self.pk).first()
        if not errors.get("name") and clash is not None:
            errors["name"] = [f"a registry named '{clash.name}' already exists (names are unique in any case)."]
        if errors:
            raise ValidationError(errors)

    def data_endpoint_host(self) -> str:
        """The host[:port] that connected registries use as ParentGatewayEndpoint."""
        from urllib.parse import urlsplit

        return urlsplit(self.login_server).netloc


class ConnectedRegistry(models.Model):
    """An on-premises registry mirroring selected repositories of its parent.

    parent is None when the parent is the top-level registry."""

    class Mode(models.TextChoices):
        READ_ONLY = "ReadOnly"
        READ_WRITE = "ReadWrite"

    class Activation(models.TextChoices):
        ACTIVE = "Active"
        INACTIVE = "Inactive"

    class ConnectionState(models.TextChoices):
        ONLINE = "Online"
        OFFLINE = "Offline"
        SYNCING = "Syncing"
        UNHEALTHY = "Unhealthy"

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="connected_registries")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    name = models.CharField(max_length=50)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.READ_ONLY)
    repositories = models.JSONField(default=list, help_text="Repository names, lower-cased, in the order given")
    sync_schedule = models.CharField(max_length=100, default=validation.CONTINUOUS_SCHEDULE)
    sync_window = models.CharField(max_length=32, null=True, blank=True)
    message_ttl = models.CharField(max_length=32, default=validation.DEFAULT_MESSAGE_TTL)
    log_level = models.CharField(max_length=12, default="Information")
    login_server = models.CharField(max_length=255, blank=True, default="",
                                    help_text="URL of this connected registry's own OCI endpoint")
    activation_status = models.CharField(max_length=8, choices=Activation.choices, default=Activation.INACTIVE)
    connection_state = models.CharField(max_length=10, choices=ConnectionState.choices,
                                        default=ConnectionState.OFFLINE)
    status_details = models.JSONField(default=list, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    # The per-registry sync lock: a lease in the shared database, taken with
    # one conditional UPDATE, renewed while a sync works, expiring if its
    # worker dies. See connected.locks.
    sync_lock_owner = models.CharField(max_length=64, blank=True, default="")
    sync_lock_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "connected registries"
        ordering = ["registry__name", "name"]
        constraints = [
            models.UniqueConstraint("registry", Lower("name"), name="connected_registry_name_unique_ci"),
        ]

    def __str__(self):
        return self.name

    # --- validation -----------------------------------------------------
    def clean_fields(self, exclude=None):
        # Mode and log level are accepted in any case ("readwrite"): spell them
        # canonically before Django checks the choices, so the product's rule
        # (not Django's "not a valid choice") is what a bad value reports.
        for field, canonical in (("mode", validation.validate_mode), ("log_level", validation.validate_log_level)):
            try:
                setattr(self, field, canonical(getattr(self, field)))
            except ValidationError:
                pass
        errors = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as e:
            errors = e.message_dict
        for field in ("mode", "log_level"):
            if field in errors:  # replaced by the rule's own message in clean()
                del errors[field]
        if errors:
            raise ValidationError(errors)

    def clean(self):
        errors = {}

        def check(field, func, *args):
            try:
                return func(*args)
            except ValidationError as e:
                errors.update(e.message_dict)

        self.name = check("name", validation.validate_name, self.name) or self.name
        self.mode = check("mode", validation.validate_mode, self.mode) or self.mode
        self.repositories = check("repositories", validation.normalize_repositories, self.repositories) \
            or self.repositories
        self.log_level = check("log_level", validation.validate_log_level, self.log_level) or self.log_level
        props = check("sync_schedule", validation.normalize_sync_properties, self.sync_schedule, self.sync_window)
        if props:
            self.sync_schedule, self.sync_window = props
        self.message_ttl = check("message_ttl", validation.validate_message_ttl, self.message_ttl) \
            or self.message_ttl
        if self.login_server:
            self.login_server = check("login_server", validation.validate_login_server, self.login_server) \
                or self.login_server
            bound = ConnectedRegistry.objects.filter(login_server__iexact=self.login_server).exclude(pk=self.pk)
            top = Registry.objects.filter(login_server__iexact=self.login_server).first()
            if "login_server" not in errors and top is not None:
                errors["login_server"] = [f"{self.login_server} is the login server of registry '{top.name}'; a "
                                          "connected registry needs an instance of its own."]
            elif "login_server" not in errors and bound.exists():
                errors["login_server"] = [f"{self.login_server} is already the login server of connected "
                                          f"registry '{bound.first().name}'; one instance serves one "
                                          "connected registry."]
        if self.pk:
            check("mode", self._fixed_after_creation, "mode")
            check("parent", self._fixed_after_creation, "parent_id")
        if self.parent_id and "parent" not in errors:
            parent = self.parent
            if parent.registry_id != self.registry_id:
                errors["parent"] = [f"'{parent.name}' is not a connected registry of '{self.registry.name}'."]
            elif self.pk and (parent.pk == self.pk or self.pk in [a.pk for a in parent.ancestors()]):
                errors["parent"] = ["a connected registry cannot be its own ancestor."]
            elif "mode" not in errors:
                check("mode", validation.validate_child_mode, self.mode, parent.mode)
        if "name" not in errors and self.registry_id:
            clash = ConnectedRegistry.objects.filter(registry_id=self.registry_id, name__iexact=self.name) \
                .exclude(pk=self.pk).first()
            if clash is not None:
                errors["name"] = [f"a connected registry named '{clash.name}' already exists in "
                                  f"'{self.registry.name}' (names are unique in any case)."]
        if errors:
            raise ValidationError(errors)

    def _fixed_after_creation(self, attname: str) -> None:
        """Mode and parent are chosen once: an existing row must keep them."""
        row = ConnectedRegistry.objects.filter(pk=self.pk).values(attname).first()
        if row is None or row[attname] == getattr(self, attname):
            return
        stored = row[attname]
        if attname == "mode":
            validation.fail("mode", f"the mode of '{self.name}' is {stored} and cannot be changed after creation.")
        was = ConnectedRegistry.objects.get(pk=stored).name if stored else self.registry.name
        validation.fail("parent", f"the parent of '{self.name}' is '{was}' and cannot be changed after creation.")

    # --- derived state --------------------------------------------------
    def sync_token_or_none(self):
        """The sync token, or None for a row made without the operations
        (fixtures, old data before tokens existed)."""
        from .access import Token

        try:
            return self.sync_token
        except Token.DoesNotExist:
            return None

    def event_source_or_none(self):
        """Its EventSource (it sends webhook events to the portal), or None."""
        from .messages import EventSource

        try:
            return self.event_source
        except EventSource.DoesNotExist:
            return None

    def current_status_details(self) -> list[dict]:
        """The stored status details, plus why sync is stopped when the sync
        token is disabled (a run finishing after the token was disabled may
        have overwritten the stored reason)."""
        details = list(self.status_details or [])
        token = self.sync_token_or_none()
        if token is not None and token.status == token.Status.DISABLED \
                and not any(d.get("code") == SYNC_TOKEN_DISABLED for d in details):
            details.append(sync_token_disabled_detail(self, token, token.updated_at))
        return details

    def ancestors(self) -> list["ConnectedRegistry"]:
        """The connected registries above this one, nearest first (the
        top-level registry is not included)."""
        chain, node, seen = [], self.parent, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = node.parent
        return chain

    def parent_name(self) -> str:
        """The parent's name as the CLI and pages show it."""
        return self.parent.name if self.parent_id else self.registry.name

    def parent_login_server(self) -> str:
        """The URL of the OCI endpoint this connected registry syncs from."""
        return self.parent.login_server if self.parent_id else self.registry.login_server

    def gateway_endpoint(self) -> str | None:
        """Where this connected registry's sync messages go (host[:port]): the
        registry's data endpoint, or for a nested child its parent connected
        registry's login server (None until that parent has one)."""
        from urllib.parse import urlsplit

        if self.parent_id:
            return urlsplit(self.parent.login_server).netloc or None
        return self.registry.data_endpoint_host()

    def is_continuous(self) -> bool:
        """True when the schedule is the continuous one (the window is ignored)."""
        return validation.is_continuous(self.sync_schedule)

    def sync_window_display(self) -> str:
        """The window as the CLI table shows it: the duration, or '-' for continuous sync."""
        if self.is_continuous() or not self.sync_window:
            return "-"
        return self.sync_window

    def sync_window_delta(self) -> dt.timedelta | None:
        if self.is_continuous() or not self.sync_window:
            return None
        return validation.parse_duration(self.sync_window, "sync_window")

    def is_sync_locked(self, now: dt.datetime | None = None) -> bool:
        """True while a sync holds this connected registry's lease."""
        now = now or timezone.now()
        return bool(self.sync_lock_owner) and self.sync_lock_expires_at is not None \
            and self.sync_lock_expires_at > now

    def sync_blockers(self) -> list[str]:
        """Why a sync cannot run now, as sentences; empty when it can."""
        reasons = []
        if not self.login_server:
            reasons.append("it has no login server: bind a deployed instance first.")
        if self.parent_id and not self.parent.login_server:
            reasons.append(f"its parent '{self.parent.name}' has no login server: activate the parent first.")
        if not self.registry.data_endpoint_enabled:
            from . import health

            reasons.append(health.data_endpoint_disabled_text(self.registry.name))
        token = self.sync_token_or_none()
        if token is not None and token.status == token.Status.DISABLED:
            reasons.append(sync_token_disabled_text(self, token))
        return reasons


SYNC_TOKEN_DISABLED = "SyncTokenDisabled"


def sync_token_disabled_text(cr: ConnectedRegistry, token) -> str:
    from . import health

    return health.sync_token_disabled_text(cr.registry.name, token.name)


def sync_token_disabled_detail(cr: ConnectedRegistry, token, when: dt.datetime | None = None) -> dict:
    """The status detail that says a disabled sync token stopped sync."""
    when = when or timezone.now()
    return {"type": "SyncToken", "code": SYNC_TOKEN_DISABLED,
            "description": "sync is stopped: " + sync_token_disabled_text(cr, token),
            "timestamp": when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")}


class SyncRun(models.Model):
    """One sync of one connected registry, with its outcome and counters."""

    class Trigger(models.TextChoices):
        INITIAL = "initial"
        CONTINUOUS = "continuous"
        SCHEDULE = "schedule"
        MANUAL = "manual"
        MESSAGE = "message"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"
        CANCELLED = "cancelled"
        WINDOW_CLOSED = "window_closed", "window closed"
        SKIPPED = "skipped", "skipped (another run was active)"

    class Scope(models.TextChoices):
        FULL = "full", "full comparison"
        MESSAGES = "messages", "sync messages"

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED, Status.CANCELLED,
                Status.WINDOW_CLOSED, Status.SKIPPED)
    # The error of a run that never started because sync_blockers() said no.
    REFUSED_PREFIX = "sync refused: "
    # A run that a registry (or the token service) refused: its credentials,
    # not the sync, are what failed (health says AuthenticationFailed).
    CREDENTIALS_REFUSED_PREFIX = "credentials refused: "

    connected_registry = models.ForeignKey(ConnectedRegistry, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.QUEUED)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tags_planned = models.PositiveIntegerField(default=0)
    tags_done = models.PositiveIntegerField(default=0)
    tags_copied = models.PositiveIntegerField(default=0)
    tags_skipped = models.PositiveIntegerField(default=0, help_text="Tags already in sync")
    tags_failed = models.PositiveIntegerField(default=0)
    tags_deleted = models.PositiveIntegerField(default=0)
    bytes_planned = models.BigIntegerField(default=0, help_text="Bytes the run expects to transfer")
    bytes_moved = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    # A full comparison looks at every tag of every repository; a messages
    # run applies only the changes its sync messages name.
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.FULL)

    class Meta:
        ordering = ["-queued_at", "-pk"]
        indexes = [models.Index(fields=["connected_registry", "-queued_at"])]

    def __str__(self):
        return f"{self.connected_registry.name} run {self.pk} ({self.status})"

    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def duration(self) -> dt.timedelta | None:
        """Wall time from start to end (or to now while running); None before it starts."""
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def progress_fraction(self) -> float | None:
        """How far a run is, from 0 to 1, by bytes when it moves any, else by
        tags; None while nothing is planned yet."""
        if self.bytes_planned:
            return min(1.0, self.bytes_moved / self.bytes_planned)
        if self.tags_planned:
            return min(1.0, self.tags_done / self.tags_planned)
        return None

    def eta(self, now: dt.datetime | None = None) -> dt.timedelta | None:
        """Time left at the pace so far, for a running run that moves bytes; else None."""
        if self.status != self.Status.RUNNING or not self.started_at or not self.bytes_planned \
                or not self.bytes_moved:
            return None
        elapsed = ((now or timezone.now()) - self.started_at).total_seconds()
        left = max(0, self.bytes_planned - self.bytes_moved)
        return dt.timedelta(seconds=round(elapsed * left / self.bytes_moved))


class SyncRunTag(models.Model):
    """The ledger of a run: what happened to each tag."""

    class Outcome(models.TextChoices):
        COPIED = "copied"
        IN_SYNC = "in_sync", "already in sync"
        DELETED = "deleted"
        FAILED = "failed"
        PUSHED = "pushed", "pushed to the parent"
        CONFLICT = "conflict", "conflict (both versions kept)"
        KEPT = "kept", "kept (the parent lists no tags)"

    # Outcomes after which both sides hold the same digest for the tag.
    AGREED = (Outcome.COPIED, Outcome.IN_SYNC, Outcome.PUSHED, Outcome.CONFLICT, Outcome.KEPT)

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="tags")
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=150, blank=True, default="")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    bytes_moved = models.BigIntegerField(default=0)
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["repository", "tag"]


from .access import ScopeMap, Token  # noqa: E402,F401  (see the module docstring)
from .audit import AuditEvent  # noqa: E402,F401
from .messages import EventSource, ReceivedEvent, SyncMessage  # noqa: E402,F401


class ConnectionStateChange(models.Model):
    """The history of a connected registry's connection state: one row per change."""

    connected_registry = models.ForeignKey(ConnectedRegistry, on_delete=models.CASCADE, related_name="state_changes")
    at = models.DateTimeField(default=timezone.now)
    previous_state = models.CharField(max_length=10)
    state = models.CharField(max_length=10)
    status_details = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["connected_registry", "-at"])]

    def __str__(self):
        return f"{self.connected_registry.name}: {self.previous_state} -> {self.state} at {self.at:%Y-%m-%d %H:%M:%S}"
