"""Who is asking and what they get: credentials, the per-token slow-down,
the permissions a token has against a service, and the audit record of
every decision. The HTTP side is in views.

A request names a service (naming) and carries HTTP Basic credentials: a
token name and one of its two passwords. Refused: unknown tokens, wrong,
expired or rotated-out passwords, disabled tokens, tokens with no standing
at that service, and, after TOKEN_FAILURE_LIMIT failures from one client address within
TOKEN_FAILURE_WINDOW_SECONDS, every attempt from that address until the window ends (429 with
Retry-After; nothing sleeps). Every decision becomes an AuditEvent naming the
token, the service, what was asked, granted and denied, and why; never a
password, a hash or a JWT.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import math
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.contrib.auth.hashers import check_password, make_password
from django.utils import timezone

from connected.audit import Actor, Source, record
from connected.models import ConnectedRegistry, Registry, Token

from . import decisions, naming

log = logging.getLogger(__name__)


@dataclass
class Decision:
    status: int  # 200, 400, 401, 429
    message: str = ""
    token: Token | None = None
    access: list[dict] = field(default_factory=list)
    retry_after: int = 0


@dataclass(frozen=True)
class Target:
    """The registry (and connected registry) a service names."""

    service: str
    registry: Registry
    connected_registry: ConnectedRegistry | None


def find_target(service: str) -> Target | None:
    parsed = naming.parse_service(service)
    if parsed is None:
        return None
    registry = Registry.objects.filter(name__iexact=parsed[0]).first()
    if registry is None:
        return None
    cr = None
    if parsed[1] is not None:
        cr = registry.connected_registries.filter(name__iexact=parsed[1]).first()
        if cr is None:
            return None
    return Target(service, registry, cr)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep and user else None


def permissions(token: Token, target: Target) -> decisions.Permissions | None:
    """What token may do at target; None when it has no standing there."""
    if token.registry_id != target.registry.pk:
        return None
    from_map = decisions.from_scope_map(token.scope_map.actions)
    cr = target.connected_registry
    if cr is None:
        return from_map  # every token of a registry, with its scope map
    if token.connected_registry_id == cr.pk:
        return decisions.OWNER  # the connected registry's own sync
    syncs_from_it = token.connected_registry_id is not None and token.connected_registry.parent_id == cr.pk
    if not syncs_from_it and not token.client_of.filter(pk=cr.pk).exists():
        return None
    if cr.mode == ConnectedRegistry.Mode.READ_ONLY:
        # A ReadOnly connected registry is a mirror: only its own sync writes.
        return from_map.without((decisions.PUSH, decisions.DELETE))
    return from_map


# Compared against when the token does not exist, so that an unknown name
# costs as much time as a wrong password.
_dummy_hash: list[str] = []


def _burn_time(password: str) -> None:
    if not _dummy_hash:
        _dummy_hash.append(make_password("not-a-token-password"))
    check_password(password, _dummy_hash[0])


# Failures are counted per token AND per client address: a stranger who
# guesses wrong passwords for a sync token slows down only their own
# attempts, never the worker that holds the right one. Counted in Django's
# cache (Redis with REDIS_URL, shared by every web process; else per process).
def _failure_key(token: Token, client: str) -> str:
    return f"tokenservice:failures:{token.pk}:{client or '-'}"


def _locked_seconds(token: Token, client: str, now: dt.datetime) -> int:
    count, since = cache.get(_failure_key(token, client)) or (0, None)
    if count < settings.PORTAL["TOKEN_FAILURE_LIMIT"] or since is None:
        return 0
    ends = since + settings.PORTAL["TOKEN_FAILURE_WINDOW_SECONDS"]
    return max(0, math.ceil(ends - now.timestamp()))


def _note_failure(token: Token, client: str, now: dt.datetime) -> None:
    window = settings.PORTAL["TOKEN_FAILURE_WINDOW_SECONDS"]
    key = _failure_key(token, client)
    count, since = cache.get(key) or (0, None)
    if since is None or since + window <= now.timestamp():
        count, since = 0, now.timestamp()  # a new window
    cache.set(key, (count + 1, since), timeout=math.ceil(window) + 1)


def _note_success(token: Token, client: str) -> None:
    cache.delete(_failure_key(token, client))


def client_address(meta) -> str:
    """The client's address: REMOTE_ADDR, or behind a trusted reverse proxy
    (PORTAL_TRUSTED_PROXIES) the nearest X-Forwarded-For hop that is not one,
    so failures are counted per real client, not for everyone at once."""
    remote = meta.get("REMOTE_ADDR", "")
    trusted = settings.PORTAL["TRUSTED_PROXIES"]
    if remote not in trusted:
        return remote
    hops = [hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:100]
    return remote


def refuse_unknown_service(service: str, authorization: str | None) -> Decision:
    """A request for a service no registry of this portal has, answered as an
    unknown token of a known one would be (same status, text and time), so
    that nobody can find out which registries exist by asking."""
    log.info("token request for unknown service %r", service[:100])
    credentials = parse_basic(authorization)
    if credentials is None:
        return Decision(401, "authentication required: HTTP Basic with a token name and password")
    _burn_time(credentials[1])
    return Decision(401, "invalid token name or password")


def decide(target: Target, authorization: str | None, scope_values: list[str], client: str = "") -> Decision:
    """The whole decision for one token request, audited."""
    requested = decisions.parse_scopes(scope_values)
    credentials = parse_basic(authorization)
    if credentials is None:
        decision = Decision(401, "authentication required: HTTP Basic with a token name and password")
        _audit(target, "", None, requested, decision, "no credentials", client)
        return decision
    username, password = credentials
    token = target.registry.tokens.select_related("scope_map", "connected_registry").filter(
        name__iexact=username).first()
    if token is None:
        _burn_time(password)
        decision = Decision(401, "invalid token name or password")
        _audit(target, username, None, requested, decision, "unknown token", client)
        return decision

    now = timezone.now()
    locked = _locked_seconds(token, client, now)
    slot, expired = (token.remembered_slot(password, now), False) if locked else (None, False)
    if locked and slot is None:
        # The password is not even checked: guessing gains nothing here.
        decision = Decision(429, f"too many failed attempts for token '{token.name}': retry in {locked} s",
                            token, retry_after=locked)
        _audit(target, username, token, requested, decision, "too many failures", client)
        return decision
    if slot is None:
        slot, expired = token.matching_slot(password, now)
    reason = None
    if slot is None:
        reason, message = "wrong password", "invalid token name or password"
    elif expired:
        reason, message = f"password{slot} expired", f"password{slot} of token '{token.name}' has expired"
    if reason:
        _note_failure(token, client, now)
        decision = Decision(401, message, token)
        _audit(target, username, token, requested, decision, reason, client)
        return decision
    if not locked:  # a pass while locked leaves the others' count standing
        _note_success(token, client)
    if token.status != Token.Status.ENABLED:
        decision = Decision(401, f"token '{token.name}' is disabled", token)
        _audit(target, username, token, requested, decision, "token disabled", client, slot)
        return decision
    allowed = permissions(token, target)
    if allowed is None:
        decision = Decision(401, f"token '{token.name}' is not valid for service '{target.service}'", token)
        _audit(target, username, token, requested, decision, "no standing at this service", client, slot)
        return decision
    decision = Decision(200, "", token, decisions.decide(requested, allowed))
    _audit(target, username, token, requested, decision, "", client, slot)
    return decision


def _audit(target: Target, username: str, token: Token | None, requested, decision: Decision, reason: str,
           client: str, slot: int | None = None) -> None:
    granted = decision.status == 200
    changes = {"service": [None, target.service], "requested": [None, [str(s) for s in requested]]}
    if granted:
        changes["granted"] = [None, [f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in decision.access]]
    denied = decisions.refused(requested, decision.access)
    if denied:
        changes["denied"] = [None, denied]
    if reason:
        changes["reason"] = [None, reason]
    if slot is not None:
        changes["slot"] = [None, f"password{slot}"]
    if client:
        changes["client"] = [None, client]
    name = token.name if token is not None else (username[:100] or "anonymous")
    record(Actor(name, Source.API), "token.issue" if granted else "token.refuse", "token", name,
           target.registry.name, changes)
    log.info("token service %s: %s for %s at %s%s", "granted" if granted else "refused",
             changes.get("granted", [None, []])[1] if granted else reason, name, target.service,
             f" (denied {', '.join(denied)})" if denied else "")


# Public names for the other door that takes token credentials, the gateway
# API (connected.api.gateway): the same timing for unknown names and the same
# failure counters, so a guesser gains nothing by switching doors.
burn_time = _burn_time
locked_seconds = _locked_seconds
note_failure = _note_failure
note_success = _note_success
