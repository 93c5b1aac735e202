"""The operations of the product, shared by the CLI, the pages, the admin and
the API. Each validates through the models (connected.validation), stores all
or nothing, and records who did it (an Actor, by default the system) as an
AuditEvent in the same transaction. Errors: django ValidationError keyed by
field, or NotFound. Token and password operations: connected.credentials.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import access, syncs, validation
from .audit import SYSTEM, Actor, changed, record
from .health_check import reassess, record_state
from .models import ConnectedRegistry, Registry, ScopeMap, SyncRun, Token
from .registry_client import RegistryError, ping

RUNTIME_REPOSITORY = "acr/connected-registry"


class NotFound(Exception):
    """A registry, connected registry, token or scope map that does not exist; the message says which."""


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


# --- registries ---------------------------------------------------------------

def registry_state(registry: Registry) -> dict:
    return {"loginServer": registry.login_server, "dataEndpointEnabled": registry.data_endpoint_enabled}


def create_registry(name: str, login_server: str, data_endpoint_enabled: bool = False,
                    check_login_server: bool = True, actor: Actor = SYSTEM) -> Registry:
    registry = Registry(name=name, login_server=login_server, data_endpoint_enabled=data_endpoint_enabled)
    registry.full_clean()
    if check_login_server:
        check_reachable(registry.login_server)
    with transaction.atomic():
        registry.save()
        record(actor, "registry.create", "registry", registry.name, registry.name,
               changed({}, registry_state(registry)))
    return registry


def update_registry(registry: Registry, *, data_endpoint_enabled: bool | None = None,
                    login_server: str | None = None, actor: Actor = SYSTEM) -> Registry:
    before = registry_state(registry)
    if data_endpoint_enabled is not None:
        registry.data_endpoint_enabled = data_endpoint_enabled
    if login_server is not None:
        registry.login_server = login_server
    registry.full_clean()
    changes = changed(before, registry_state(registry))
    with transaction.atomic():
        registry.save()
        if changes:
            record(actor, "registry.update", "registry", registry.name, registry.name, changes)
        if "dataEndpointEnabled" in changes:
            for cr in registry.connected_registries.all():
                reassess(cr)  # sync refuses (or may go on) from now: the states say so now
    return registry


# --- connected registries: state, scope maps ------------------------------------

def connected_registry_state(cr: ConnectedRegistry) -> dict:
    """The audited properties, by their public (camelCase) names."""
    return {"mode": cr.mode, "parent": cr.parent.name if cr.parent_id else None,
            "repositories": list(cr.repositories), "schedule": cr.sync_schedule, "syncWindow": cr.sync_window,
            "messageTtl": cr.message_ttl, "logLevel": cr.log_level, "loginServer": cr.login_server or None,
            "activationStatus": cr.activation_status}


def _save_audited(cr: ConnectedRegistry, before: dict, actor: Actor, action="connectedRegistry.update") -> dict:
    """Save cr; the changes (field: [before, after]) are audited and returned."""
    changes = changed(before, connected_registry_state(cr))
    cr.save()
    if changes:
        record(actor, action, "connectedRegistry", cr.name, cr.registry.name, changes)
    return changes


def create_sync_credentials(cr: ConnectedRegistry, actor: Actor = SYSTEM) -> Token:
    """The sync token and scope map of a new connected registry (inside the
    caller's transaction)."""
    scope_map = ScopeMap(registry=cr.registry, name=access.sync_scope_map_name(cr.name),
                         actions=access.sync_scope_actions(cr.name, cr.mode, cr.repositories),
                         description=f"Sync scope map of connected registry {cr.name}")
    scope_map.full_clean()
    scope_map.save()
    token = Token(registry=cr.registry, name=access.sync_token_name(cr.name), scope_map=scope_map,
                  connected_registry=cr)
    token.full_clean()
    token.save()
    record(actor, "scopeMap.create", "scopeMap", scope_map.name, cr.registry.name,
           {"actions": [None, scope_map.actions]})
    record(actor, "token.create", "token", token.name, cr.registry.name,
           {"status": [None, token.status], "scopeMap": [None, scope_map.name],
            "connectedRegistry": [None, cr.name]})
    return token


def refresh_sync_scope_map(cr: ConnectedRegistry) -> None:
    """Keep the sync scope map in step with the repositories (derived data:
    the connected registry's own audit event records the change)."""
    token = cr.sync_token_or_none()
    if token is None:
        return
    scope_map = token.scope_map
    scope_map.actions = access.sync_scope_actions(cr.name, cr.mode, cr.repositories)
    scope_map.full_clean()
    scope_map.save()


def _ancestors_gaining(cr: ConnectedRegistry, repositories, field: str) -> list[tuple[ConnectedRegistry, dict]]:
    """Every ancestor with the repositories it lacks added (an ancestor can
    only pass on what it holds), validated, not saved: (ancestor, before)."""
    result = []
    ancestors = [cr.parent] + cr.parent.ancestors() if cr.parent_id else []
    for ancestor in ancestors:
        missing = [r for r in repositories if r not in ancestor.repositories]
        if not missing:
            continue
        before = connected_registry_state(ancestor)
        ancestor.repositories = list(ancestor.repositories) + missing
        try:
            ancestor.full_clean()
        except ValidationError as e:
            rule = next(iter(e.message_dict.values()))[-1]
            validation.fail(field, f"ancestor '{ancestor.name}' must sync them too, but: {rule}")
        result.append((ancestor, before))
    return result


def nesting_warnings(cr: ConnectedRegistry) -> list[str]:
    """Nested setups need the runtime image synced all the way down."""
    if not cr.parent_id:
        return []
    missing = [a.name for a in [cr.parent] + cr.parent.ancestors() if RUNTIME_REPOSITORY not in a.repositories]
    if not missing:
        return []
    return [f"the ancestors of '{cr.name}' do not all sync '{RUNTIME_REPOSITORY}' (missing in: "
            f"{', '.join(missing)}); a nested connected registry without Internet access needs it to deploy. "
            f"Add it: python manage.py acr connected-registry repo --registry {cr.registry.name} "
            f"--name {missing[0]} --add {RUNTIME_REPOSITORY}"]


# --- connected registries: lifecycle --------------------------------------------

def create_connected_registry(registry: Registry, name: str, repositories, *, mode: str = "ReadOnly",
                              parent: ConnectedRegistry | None = None, login_server: str = "",
                              sync_schedule: str | None = None, sync_window: str | None = None,
                              message_ttl: str | None = None, log_level: str | None = None,
                              check_login_server: bool = True, actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Create a connected registry with its sync token and scope map; every
    ancestor's scope gains its repositories. With a login server (a deployed
    instance that answers) it is Active and its first sync is queued.
    The result's .warnings lists what the caller should tell the user."""
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
        sync_window=sync_window,
        message_ttl=message_ttl if message_ttl is not None else validation.DEFAULT_MESSAGE_TTL,
        log_level=log_level if log_level is not None else "Information",
    )
    cr.full_clean()
    ancestors = _ancestors_gaining(cr, cr.repositories, "repositories")
    if cr.login_server and check_login_server:
        check_reachable(cr.login_server)
    with transaction.atomic():
        if cr.login_server:
            cr.activation_status = ConnectedRegistry.Activation.ACTIVE
            cr.last_activity_at = timezone.now()
        cr.save()
        record(actor, "connectedRegistry.create", "connectedRegistry", cr.name, registry.name,
               changed({}, connected_registry_state(cr)))
        create_sync_credentials(cr, actor)
        for ancestor, before in ancestors:
            _save_audited(ancestor, before, actor)
            refresh_sync_scope_map(ancestor)
        cr.warnings = nesting_warnings(cr) + window_warnings(cr, sync_window)
        if cr.login_server:
            _queue_initial_sync(cr)
    return cr


def _queue_initial_sync(cr: ConnectedRegistry) -> None:
    """The first sync of a newly bound instance, unless something blocks it
    (then .warnings says what)."""
    blockers = cr.sync_blockers()
    if blockers:
        cr.warnings.append(f"no sync yet: cannot sync '{cr.name}': {' '.join(blockers)}")
    else:
        syncs.queue_sync(cr, SyncRun.Trigger.INITIAL)


UNSET = object()


def update_connected_registry(cr: ConnectedRegistry, *, sync_schedule: str | None = None,
                              sync_window: str | None = None, message_ttl: str | None = None,
                              log_level: str | None = None, mode: str | None = None, parent=UNSET,
                              actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Change the sync properties and logging. mode and parent are accepted
    only so the model can say they are fixed after creation."""
    before = connected_registry_state(cr)
    if sync_schedule is not None:
        cr.sync_schedule = sync_schedule
    if sync_window is not None:
        cr.sync_window = sync_window
    if message_ttl is not None:
        cr.message_ttl = message_ttl
    if log_level is not None:
        cr.log_level = log_level
    if mode is not None:
        cr.mode = mode
    if parent is not UNSET:
        cr.parent = parent
    try:
        cr.full_clean()
    except ValidationError:
        cr.refresh_from_db()
        raise
    with transaction.atomic():
        cr.changes = _save_audited(cr, before, actor)
    cr.warnings = window_warnings(cr, sync_window)
    return cr


def window_warnings(cr: ConnectedRegistry, window_given: str | None) -> list[str]:
    """A window given for a continuous schedule is kept but has no effect: say so."""
    if window_given and cr.is_continuous():
        return [f"--sync-window {cr.sync_window} is kept but ignored while the schedule is continuous "
                f"('{validation.CONTINUOUS_SCHEDULE}'); it applies once --sync-schedule sets a schedule."]
    return []


def change_repositories(cr: ConnectedRegistry, add=(), remove=(), actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Add and remove repositories; the sync scope map follows, and every
    ancestor's scope gains what is added. A repository a descendant still
    syncs cannot be removed (the descendant gets it through this one)."""
    added = validation.normalize_repositories(add, "add", allow_empty=True)
    removed = validation.normalize_repositories(remove, "remove", allow_empty=True)
    for repo in added:
        if repo in cr.repositories:
            validation.fail("add", f"'{repo}' is already synced by '{cr.name}'.")
        if repo in removed:
            validation.fail("remove", f"'{repo}' is both added and removed.")
    for repo in removed:
        if repo not in cr.repositories:
            validation.fail("remove", f"'{repo}' is not synced by '{cr.name}'.")
        users = [d.name for d in descendants(cr) if repo in d.repositories]
        if users:
            validation.fail("remove", f"'{repo}' is still synced by {', '.join(users)} below '{cr.name}'; "
                                      "remove it there first.")
    new = [r for r in cr.repositories if r not in removed] + added
    if not new:
        validation.fail("remove", f"'{cr.name}' must sync at least one repository.")
    if len(new) > validation.MAX_REPOSITORIES_PER_SCOPE_MAP:
        validation.fail("add", f"'{cr.name}' would sync {len(new)} repositories, more than the limit of "
                               f"{validation.MAX_REPOSITORIES_PER_SCOPE_MAP} per scope map.")
    before = connected_registry_state(cr)
    cr.repositories = new
    cr.full_clean()
    ancestors = _ancestors_gaining(cr, added, "add")
    with transaction.atomic():
        _save_audited(cr, before, actor)
        refresh_sync_scope_map(cr)
        for ancestor, ancestor_before in ancestors:
            _save_audited(ancestor, ancestor_before, actor)
            refresh_sync_scope_map(ancestor)
    return cr


def set_repositories(cr: ConnectedRegistry, repositories, actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Replace the repository list (forms, admin): the difference is added and removed."""
    wanted = validation.normalize_repositories(repositories)
    return change_repositories(cr, add=[r for r in wanted if r not in cr.repositories],
                               remove=[r for r in cr.repositories if r not in wanted], actor=actor)


def descendants(cr: ConnectedRegistry) -> list[ConnectedRegistry]:
    """Every connected registry below cr, breadth first."""
    found, frontier = [], [cr.pk]
    while frontier:
        level = list(ConnectedRegistry.objects.filter(parent_id__in=frontier))
        found += level
        frontier = [c.pk for c in level]
    return found


def activate_connected_registry(cr: ConnectedRegistry, login_server: str, check_login_server: bool = True,
                                actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Bind the deployed instance at login_server (it must answer as a
    registry). Only one instance is active at a time. The first sync is
    queued when nothing blocks it; .warnings says what does."""
    url = validation.validate_login_server(login_server)
    cr.warnings = []
    if cr.activation_status == ConnectedRegistry.Activation.ACTIVE:
        if cr.login_server == url:
            return cr
        validation.fail("login_server", f"'{cr.name}' is already active at {cr.login_server}; only one instance "
                                        "can be active: deactivate it first (python manage.py acr "
                                        f"connected-registry deactivate --registry {cr.registry.name} "
                                        f"--name {cr.name}).")
    before = connected_registry_state(cr)
    cr.login_server = url
    try:
        cr.full_clean()
    except ValidationError:
        cr.refresh_from_db()
        raise
    if check_login_server:
        check_reachable(cr.login_server)
    with transaction.atomic():
        cr.activation_status = ConnectedRegistry.Activation.ACTIVE
        cr.last_activity_at = timezone.now()
        _save_audited(cr, before, actor, "connectedRegistry.activate")
        _queue_initial_sync(cr)
    return cr


def deactivate_connected_registry(cr: ConnectedRegistry, actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Unbind the deployed instance: Inactive and Offline, its syncs stopped,
    so another instance can be activated."""
    before = connected_registry_state(cr)
    with transaction.atomic():
        cr.activation_status = ConnectedRegistry.Activation.INACTIVE
        cr.connection_state = ConnectedRegistry.ConnectionState.OFFLINE
        cr.login_server = ""
        cr.status_details = []
        _save_audited(cr, before, actor, "connectedRegistry.deactivate")
        record_state(cr, ConnectedRegistry.ConnectionState.OFFLINE, [])
        stop_runs(cr, "the connected registry was deactivated")
    return cr


def stop_runs(cr: ConnectedRegistry, reason: str) -> None:
    """Queued runs are cancelled; running ones are asked to stop."""
    now = timezone.now()
    cr.runs.filter(status=SyncRun.Status.QUEUED).update(status=SyncRun.Status.CANCELLED, finished_at=now,
                                                         started_at=now, error=reason)
    cr.runs.filter(status=SyncRun.Status.RUNNING).update(cancel_requested=True)


def deletion_blocker(cr: ConnectedRegistry) -> str | None:
    """Why cr cannot be deleted now (it has children), or None."""
    children = sorted(c.name for c in cr.children.all())
    if children:
        return (f"'{cr.name}' cannot be deleted while it has connected registries below it "
                f"({', '.join(children)}): delete those first.")
    return None


def delete_connected_registry(cr: ConnectedRegistry, actor: Actor = SYSTEM) -> None:
    """Delete a connected registry with its sync token and scope map. Refused
    while connected registries hang below it."""
    blocker = deletion_blocker(cr)
    if blocker:
        validation.fail("name", blocker)
    token = cr.sync_token_or_none()
    registry_name = cr.registry.name
    with transaction.atomic():
        stop_runs(cr, "the connected registry was deleted")
        record(actor, "connectedRegistry.delete", "connectedRegistry", cr.name, registry_name,
               changed(connected_registry_state(cr), {}))
        cr.delete()  # the token goes with it (cascade)
        if token is not None:
            record(actor, "token.delete", "token", token.name, registry_name)
            if not token.scope_map.tokens.exists():
                token.scope_map.delete()
                record(actor, "scopeMap.delete", "scopeMap", token.scope_map.name, registry_name)
