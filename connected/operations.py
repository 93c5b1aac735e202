"""The operations of the product, shared by the CLI, the pages, the admin and
the API. Each validates through the models (connected.validation) and stores
all or nothing. Errors: django ValidationError keyed by field, or NotFound.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import validation
from .models import ConnectedRegistry, Registry, SyncRun
from .registry_client import RegistryError, ping


class NotFound(Exception):
    """A registry or connected registry that does not exist; the message says which."""


def get_registry(name: str) -> Registry:
    try:
        return Registry.objects.get(name__iexact=name)
    except Registry.DoesNotExist:
        raise NotFound(f"registry '{name}' not found.") from None


def get_connected_registry(registry: Registry, name: str) -> ConnectedRegistry:
    try:
        return registry.connected_registries.select_related("registry", "parent").get(name__iexact=name)
    except ConnectedRegistry.DoesNotExist:
        raise NotFound(f"connected registry '{name}' not found in registry '{registry.name}'.") from None


def check_reachable(url: str, field: str = "login_server") -> None:
    """Fail with a field error unless url answers as an OCI registry."""
    try:
        ping(url, timeout=settings.PORTAL["REGISTRY_TIMEOUT_SECONDS"] / 3)
    except RegistryError as e:
        raise ValidationError({field: [str(e)]}) from None


def create_registry(name: str, login_server: str, data_endpoint_enabled: bool = False,
                    check_login_server: bool = True) -> Registry:
    registry = Registry(name=name, login_server=login_server, data_endpoint_enabled=data_endpoint_enabled)
    registry.full_clean()
    if check_login_server:
        check_reachable(registry.login_server)
    with transaction.atomic():
        registry.save()
    return registry


def update_registry(registry: Registry, *, data_endpoint_enabled: bool | None = None,
                    login_server: str | None = None) -> Registry:
    if data_endpoint_enabled is not None:
        registry.data_endpoint_enabled = data_endpoint_enabled
    if login_server is not None:
        registry.login_server = login_server
    registry.full_clean()
    registry.save()
    return registry


def create_connected_registry(registry: Registry, name: str, repositories, *, mode: str = "ReadOnly",
                              parent: ConnectedRegistry | None = None, login_server: str = "",
                              sync_schedule: str | None = None, sync_window: str | None = None,
                              message_ttl: str | None = None, log_level: str | None = None,
                              check_login_server: bool = True) -> ConnectedRegistry:
    """Create a connected registry. With a login server (a deployed instance
    that answers) it is Active and its first sync is queued."""
    if not registry.data_endpoint_enabled:
        raise ValidationError({"registry": [
            f"the data endpoint of registry '{registry.name}' is disabled; connected registries need it. "
            f"Enable it: python manage.py acr update --name {registry.name} --data-endpoint-enabled"]})
    limit = settings.PORTAL["MAX_CONNECTED_REGISTRIES"]
    if registry.connected_registries.count() >= limit:
        raise ValidationError({"registry": [f"registry '{registry.name}' already has {limit} connected "
                                            f"registries, the most it may have."]})
    cr = ConnectedRegistry(
        registry=registry, parent=parent, name=name, mode=mode, repositories=repositories,
        login_server=login_server or "",
        sync_schedule=sync_schedule if sync_schedule is not None else validation.CONTINUOUS_SCHEDULE,
        sync_window=sync_window, message_ttl=message_ttl or validation.DEFAULT_MESSAGE_TTL,
        log_level=log_level or "Information",
    )
    cr.full_clean()
    if cr.login_server and check_login_server:
        check_reachable(cr.login_server)
    with transaction.atomic():
        if cr.login_server:
            cr.activation_status = ConnectedRegistry.Activation.ACTIVE
            cr.last_activity_at = timezone.now()
        cr.save()
        if cr.login_server:
            queue_sync(cr, SyncRun.Trigger.INITIAL)
    return cr


def queue_sync(cr: ConnectedRegistry, trigger: str = SyncRun.Trigger.MANUAL) -> SyncRun:
    """Record a queued run and hand it to a worker once the transaction commits."""
    from .tasks import sync_connected_registry

    blockers = cr.sync_blockers()
    if blockers:
        raise ValidationError({"sync": [f"cannot sync '{cr.name}': {' '.join(blockers)}"]})
    run = SyncRun.objects.create(connected_registry=cr, trigger=trigger)
    transaction.on_commit(lambda: sync_connected_registry.delay(run.pk))
    return run


def wait_for_run(run: SyncRun, timeout: float | None = None, poll: float = 0.5) -> SyncRun:
    """Block until the run has finished (or timeout seconds pass); return it fresh."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if run.is_finished():
            return run
        if deadline is not None and time.monotonic() > deadline:
            return run
        time.sleep(poll)
