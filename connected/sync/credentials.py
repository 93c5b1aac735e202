"""The credentials the sync engine presents: the connected registry's sync
token, whose newest password the worker keeps encrypted (see
connected.tokenservice.sealed). Registries without authentication never ask
(the client only answers challenges), so nothing is needed for them.

Against the parent's service the token service grants what the sync scope
map allows; against the connected registry's own service, what syncing
needs. A disabled token, or an expired or replaced password, is refused by
the token service itself, so a sync cannot outlive its token.
"""
from __future__ import annotations

from django.utils import timezone

from connected import health
from connected.models import ConnectedRegistry, Token
from connected.tokenservice import sealed


def sync_credentials(cr: ConnectedRegistry) -> tuple[str | None, str | None]:
    """(username, password) for the clients; (None, None) when the sync token
    has no password yet (anonymous: fine for registries without auth)."""
    token = cr.sync_token_or_none()
    if token is None or not token.worker_password_sealed:
        return None, None
    try:
        return token.name, sealed.unseal(token.worker_password_sealed)
    except sealed.Unsealable:
        return None, None  # explain_refusal says why, if a registry asks


def explain_refusal(cr: ConnectedRegistry) -> str:
    """Why the token service refused this connected registry's sync token,
    from what the portal knows (the service itself never says more than
    'refused' to a client)."""
    token = Token.objects.filter(connected_registry=cr).first()
    if token is None:
        return "the connected registry has no sync token."
    fix = (f"python manage.py acr connected-registry get-settings --registry {cr.registry.name} --name {cr.name} "
           "--generate-password 1")
    if token.status != Token.Status.ENABLED:
        return health.sync_token_disabled_text(cr.registry.name, token.name)
    if not token.worker_password_sealed:
        return f"its sync token '{token.name}' has no password yet: generate one ({fix})."
    try:
        sealed.unseal(token.worker_password_sealed)
    except sealed.Unsealable as e:
        return f"{e} ({fix})."
    slot = token.worker_password_slot
    expires = getattr(token, f"password{slot}_expires_at", None) if slot else None
    if expires is not None and expires <= timezone.now():
        return f"password{slot} of its sync token '{token.name}' expired at {expires:%Y-%m-%d %H:%M} UTC ({fix})."
    return (f"the token service refused its sync token '{token.name}' (too many failed attempts, or the "
            "registry's auth block names another service or issuer: see acr token-service export).")
