"""Token operations: status, deletion, passwords, and the connection string a
deployed connected registry needs (get-settings).

A generated password is returned once to the caller, which shows it once;
only its hash is stored and the audit trail names the slot, never the value.
"""
from __future__ import annotations

import datetime as dt
import secrets

from django.db import transaction
from django.utils import timezone

from . import validation
from .audit import SYSTEM, Actor, record
from .health_check import reassess
from .models import ConnectedRegistry, Registry, ScopeMap, Token
from .operations import NotFound, stop_runs
from .tokenservice import sealed

PASSWORD_PLACEHOLDER = "<use --generate-password to generate a new password>"
PASSWORD_BYTES = 24  # 32 URL-safe characters: no ';' or '=' to break a connection string


def get_token(registry: Registry, name: str) -> Token:
    try:
        return registry.tokens.select_related("scope_map", "connected_registry__registry").get(name__iexact=name)
    except Token.DoesNotExist:
        raise NotFound(f"token '{name}' not found in registry '{registry.name}'.") from None


def get_scope_map(registry: Registry, name: str) -> ScopeMap:
    try:
        return registry.scope_maps.get(name__iexact=name)
    except ScopeMap.DoesNotExist:
        raise NotFound(f"scope map '{name}' not found in registry '{registry.name}'.") from None


def sync_token_of(cr: ConnectedRegistry) -> Token:
    token = cr.sync_token_or_none()
    if token is None:
        validation.fail("name", f"connected registry '{cr.name}' has no sync token (it was not created by the "
                                "portal's operations).")
    return token


def update_token_status(token: Token, status: str, actor: Actor = SYSTEM) -> Token:
    """Enable or disable a token. Disabling a sync token stops its connected
    registry's syncs and its state says why; enabling clears that."""
    status = validation.validate_token_status(status)
    old = token.status
    if status == old:
        return token
    with transaction.atomic():
        token.status = status
        token.full_clean()
        token.save()
        record(actor, "token.update", "token", token.name, token.registry.name, {"status": [old, status]})
        cr = token.connected_registry
        if cr is not None:
            if status == Token.Status.DISABLED:
                stop_runs(cr, f"the sync token '{token.name}' was disabled")
            reassess(cr)
    return token


def delete_token(token: Token, actor: Actor = SYSTEM) -> None:
    """Delete a token; a sync token cannot go while its connected registry exists."""
    blocker = token.deletion_blocker()
    if blocker:
        validation.fail("name", blocker)
    from .client_tokens import delete_client_token_leftovers

    with transaction.atomic():
        attached = list(token.client_of.all())
        token.delete()
        record(actor, "token.delete", "token", token.name, token.registry.name)
        delete_client_token_leftovers(token, attached, actor)


def generate_password(token: Token, slot, expiration_in_days=None, actor: Actor = SYSTEM,
                      now: dt.datetime | None = None) -> dict:
    """A new password for slot 1 or 2 (the other slot keeps working).
    Returns {"name", "value", "created_at", "expires_at"}: the only time the
    value exists outside the caller's memory is its display."""
    slot = validation.validate_password_slot(slot)
    now = now or timezone.now()
    expires_at = None
    if expiration_in_days is not None:
        expires_at = now + dt.timedelta(days=validation.validate_expiration_days(expiration_in_days))
    clear = secrets.token_urlsafe(PASSWORD_BYTES)
    with transaction.atomic():
        token.set_password(slot, clear, expires_at, now)
        if token.is_sync_token():
            # The newest password is the one the deployed instance was just
            # given: the sync engine presents it too (encrypted at rest).
            token.worker_password_sealed = sealed.seal(clear)
            token.worker_password_slot = slot
        token.save()
        record(actor, "token.generatePassword", "token", token.name, token.registry.name,
               {"slot": [None, f"password{slot}"],
                "expiresAt": [None, expires_at.isoformat() if expires_at else None]})
    return {"name": f"password{slot}", "value": clear, "created_at": now, "expires_at": expires_at}


def connection_string(cr: ConnectedRegistry, token: Token, password: str | None, protocol: str) -> str:
    """One line, no trailing semicolon, as the reference gives it."""
    gateway = cr.gateway_endpoint()
    return (f"ConnectedRegistryName={cr.name};SyncTokenName={token.name};"
            f"SyncTokenPassword={password or PASSWORD_PLACEHOLDER};ParentGatewayEndpoint={gateway};"
            f"ParentEndpointProtocol={protocol}")


def check_settings_request(cr: ConnectedRegistry, parent_protocol: str | None = None,
                           generate_password_slot=None) -> tuple[str, int | None]:
    """Validate a get-settings request without changing anything (so a
    caller can ask for confirmation afterwards): (protocol, slot or None).
    The protocol towards the top-level registry is https; http only towards
    a connected-registry parent."""
    protocol = validation.validate_parent_protocol(parent_protocol or "https", parent_is_registry=not cr.parent_id)
    slot = None
    if generate_password_slot is not None:
        slot = validation.validate_password_slot(generate_password_slot, "generate_password")
    if cr.gateway_endpoint() is None:
        validation.fail("name", f"the parent '{cr.parent.name}' of '{cr.name}' has no login server yet, so there "
                                "is no gateway to connect to: activate it first (python manage.py acr "
                                f"connected-registry activate --registry {cr.registry.name} --name "
                                f"{cr.parent.name} --login-server URL).")
    sync_token_of(cr)
    return protocol, slot


def get_settings(cr: ConnectedRegistry, parent_protocol: str | None = None, generate_password_slot=None,
                 actor: Actor = SYSTEM) -> dict:
    """What a deployed instance needs: {"ACR_REGISTRY_CONNECTION_STRING": ...}.
    With generate_password_slot (1 or 2) a new password of that slot is in
    it, shown this once; without, a placeholder."""
    protocol, slot = check_settings_request(cr, parent_protocol, generate_password_slot)
    token = sync_token_of(cr)
    password = generate_password(token, slot, actor=actor)["value"] if slot is not None else None
    return {"ACR_REGISTRY_CONNECTION_STRING": connection_string(cr, token, password, protocol)}


def settings_warnings(cr: ConnectedRegistry) -> list[str]:
    """What would keep a deployed instance from syncing with these settings."""
    token = cr.sync_token_or_none()
    warnings = []
    if not cr.registry.data_endpoint_enabled:
        warnings.append(f"the data endpoint of registry '{cr.registry.name}' is disabled, so sync cannot "
                        f"connect: python manage.py acr update --name {cr.registry.name} --data-endpoint-enabled")
    if token is not None and token.status == Token.Status.DISABLED:
        warnings.append(f"the sync token '{token.name}' is disabled, so sync is stopped: python manage.py acr "
                        f"token update --registry {cr.registry.name} --name {token.name} --status enabled")
    return warnings

