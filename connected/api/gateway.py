"""The gateway API: what the agent at the edge asks the portal.

    GET  /gateway/<registry>/<connected registry>/config              gateway/<name>/config/read
    GET  /gateway/<registry>/<connected registry>/messages[?limit=N]  gateway/<name>/message/read
    POST /gateway/<registry>/<connected registry>/messages/ack        gateway/<name>/message/write
         {"ids": [1, 2, ...]}

(<name> is the connected registry's lower-cased name; a trailing slash is
accepted.) JSON in, JSON out; errors in the registry's shape {"errors":
[{"code", "message"}]} (connected.api.responses); only the methods listed
(405 otherwise); never cached; no CSRF (machines, HTTP Basic).

Authentication: HTTP Basic with the connected registry's own sync token
(`<name>-sync-token`) and one of its two passwords. The checks, in order:

- no Basic credentials -> 401;
- unknown registry, or no token of that name in it -> 401 "invalid token
  name or password", after a password hash's worth of time (the same answer,
  in the same time, as a wrong password). An unknown registry cannot be told
  apart from a wrong token name on purpose: no credential can match in a
  registry that does not exist, and answering 404 there would let anybody
  probe registry names;
- too many failures of that token from that client address -> 429 with
  Retry-After, the password unchecked. The counters are the token service's
  own (connected.tokenservice.authenticate, Django's cache), so failures at
  either door count together;
- wrong, rotated-out or expired password -> 401 (counts a failure);
- right password: the connected registry named in the path is looked up
  only now; a token that is not its own sync token (a client token,
  another connected registry's sync token) -> 403, whatever its scope map
  says, and the same 403 when no connected registry has that name, so no
  token can tell which others exist;
- from here the caller is the connected registry itself: its last activity
  is noted (the portal heard from it), even if what follows refuses;
- disabled sync token -> 403 saying so and how to enable it;
- the gateway action the endpoint needs missing from the token's scope map
  -> 403 naming the action.

The registry's data endpoint is the gateway of sync messages: while it is
disabled, messages and ack answer 403 with the reason and serve no message.
The configuration is still served: it is not a message, and an agent needs
it to show why it waits.

Refusals of a known token are audit events (`gateway.refuse`, source api,
reason and client address; never a password), as the token service does;
every acknowledgement request is one (`connectedRegistry.acknowledgeMessages`
with the ids acknowledged and unknown). Reads are not audited: an agent
polls every few seconds, its last activity says it does.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from connected import cli_output
from connected.audit import Actor, Source, record
from connected.messages import SyncMessage
from connected.models import ConnectedRegistry, Registry, Token
from connected.tokenservice.authenticate import burn_time, client_address, locked_seconds, note_failure, note_success, \
    parse_basic

from .responses import allow, error, json_body

log = logging.getLogger(__name__)

CHALLENGE = 'Basic realm="Registry Portal gateway", charset="UTF-8"'
BAD_CREDENTIALS = "invalid token name or password"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_ACK_IDS = 1000
MAX_ID = 2 ** 63 - 1  # larger integers name no row (and overflow some databases)
IDS_RULE = "ids: required, a list of message ids (integers)"


def now() -> dt.datetime:
    """The time of a request (tests replace it)."""
    return timezone.now()


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the connected registry's own sync token."""

    token: Token
    cr: ConnectedRegistry
    client: str
    now: dt.datetime


def _unauthorized(message: str):
    return error(401, message, WWW_Authenticate=CHALLENGE)


def _refused(registry: Registry, username: str, token: Token | None, name: str, action: str, reason: str,
             client: str) -> None:
    changes = {"connectedRegistry": [None, name[:50]], "requested": [None, action], "reason": [None, reason]}
    if client:
        changes["client"] = [None, client]
    who = token.name if token is not None else (username[:100] or "anonymous")
    record(Actor(who, Source.API), "gateway.refuse", "token", who, registry.name, changes)
    log.info("gateway refused %s for %s at %s/%s: %s", action, who, registry.name, name[:50], reason)


def _authenticate(request, registry_name: str, name: str, action: str) -> tuple[Caller | None, JsonResponse | None]:
    """(the caller, None), or (None, the refusal); see the module docstring."""
    moment = now()
    client = client_address(request.META)
    credentials = parse_basic(request.META.get("HTTP_AUTHORIZATION"))
    if credentials is None:
        return None, _unauthorized("authentication required: HTTP Basic with the connected registry's sync token "
                                   "name and one of its passwords")
    username, password = credentials
    registry = Registry.objects.filter(name__iexact=registry_name).first()
    token = None
    if registry is not None:
        token = registry.tokens.select_related("scope_map").filter(name__iexact=username).first()
    if token is None:
        burn_time(password)
        if registry is not None:
            _refused(registry, username, None, name, action, "unknown token", client)
        else:
            log.info("gateway refused %s for %s: unknown registry", action, username[:100])
        return None, _unauthorized(BAD_CREDENTIALS)

    locked = locked_seconds(token, client, moment)
    # While locked, only a password this process verified recently passes
    # (no slow hash): the holder keeps working, guessers get 429.
    slot, expired = (token.remembered_slot(password, moment), False) if locked else (None, False)
    if locked and slot is None:
        _refused(registry, username, token, name, action, "too many failures", client)
        return None, error(429, f"too many failed attempts for token '{token.name}': retry in {locked} s",
                           Retry_After=str(locked))
    if slot is None:
        slot, expired = token.matching_slot(password, moment)
    if slot is None or expired:
        note_failure(token, client, moment)
        reason = "wrong password" if slot is None else f"password{slot} expired"
        _refused(registry, username, token, name, action, reason, client)
        return None, _unauthorized(BAD_CREDENTIALS if slot is None
                                   else f"password{slot} of token '{token.name}' has expired")
    if not locked:  # a pass while locked leaves the others' count standing
        note_success(token, client)

    cr = registry.connected_registries.select_related("registry", "parent").filter(name__iexact=name).first()
    # Whether another connected registry exists is none of this token's
    # business: an unknown name is refused like someone else's.
    if cr is None or token.connected_registry_id != cr.pk:
        shown = cr.name if cr is not None else name[:50]
        _refused(registry, username, token, shown, action, "not the sync token of this connected registry", client)
        return None, error(403, f"token '{token.name}' is not the sync token of connected registry '{shown}': "
                                "only a connected registry's own sync token uses its gateway")
    ConnectedRegistry.objects.filter(pk=cr.pk).update(last_activity_at=moment)
    cr.last_activity_at = moment
    if token.status != Token.Status.ENABLED:
        _refused(registry, username, token, cr.name, action, "token disabled", client)
        return None, error(403, f"sync token '{token.name}' is disabled (enable it: python manage.py acr token "
                                f"update --registry {registry.name} --name {token.name} --status enabled)")
    needed = f"gateway/{cr.name.lower()}/{action}"
    if needed not in (token.scope_map.actions or []):
        _refused(registry, username, token, cr.name, action, f"scope map lacks {needed}", client)
        return None, error(403, f"token '{token.name}' may not do this: its scope map '{token.scope_map.name}' "
                                f"lacks the action '{needed}'")
    return Caller(token, cr, client, moment), None


def _data_endpoint_refusal(cr: ConnectedRegistry) -> JsonResponse | None:
    registry = cr.registry
    if registry.data_endpoint_enabled:
        return None
    return error(403, f"the data endpoint of registry '{registry.name}' is disabled: no sync message is served "
                      f"(enable it: python manage.py acr update --name {registry.name} --data-endpoint-enabled)")


# --- GET config -----------------------------------------------------------------

@csrf_exempt
@never_cache
@allow("GET")
def config(request, registry_name: str, name: str):
    caller, refusal = _authenticate(request, registry_name, name, "config/read")
    if refusal is not None:
        return refusal
    return JsonResponse(cli_output.gateway_config_to_dict(caller.cr))


# --- GET messages ---------------------------------------------------------------

def _limit(text: str | None) -> int | None:
    """The limit asked for, or None when it breaks the rule."""
    if text is None:
        return DEFAULT_LIMIT
    text = text.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        return None
    return int(text)


@csrf_exempt
@never_cache
@allow("GET")
def messages(request, registry_name: str, name: str):
    caller, refusal = _authenticate(request, registry_name, name, "message/read")
    if refusal is not None:
        return refusal
    limit = _limit(request.GET.get("limit"))
    if limit is None:
        return error(400, f"limit: must be a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
    refusal = _data_endpoint_refusal(caller.cr)
    if refusal is not None:
        return refusal
    pending = caller.cr.messages.pending(caller.now).order_by("created_at", "pk")
    total = pending.count()
    page = list(pending[:limit])
    return JsonResponse({"messages": [{**m.as_json(), "status": m.status(caller.now)} for m in page],
                         "pending": total})


# --- POST messages/ack ------------------------------------------------------------

def _ids(body: bytes) -> tuple[list[int] | None, str]:
    """(the ids, in order, without repeats; "") or (None, the rule broken)."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"body: not JSON ({e}); send {{\"ids\": [1, 2]}}"
    ids = data.get("ids") if isinstance(data, dict) else None
    if ids is None:
        return None, IDS_RULE + ", in a JSON object: {\"ids\": [1, 2]}"
    if not isinstance(ids, list):
        return None, f"ids: must be a list of message ids (integers), not {json.dumps(ids)[:40]}"
    for i, value in enumerate(ids):
        if not isinstance(value, int) or isinstance(value, bool):
            return None, f"ids[{i}]: must be a message id (an integer), not {json.dumps(value)[:40]}"
    if len(ids) > MAX_ACK_IDS:
        return None, f"ids: at most {MAX_ACK_IDS} per request ({len(ids)} given)"
    return list(dict.fromkeys(ids)), ""


@csrf_exempt
@never_cache
@allow("POST")
def acknowledge(request, registry_name: str, name: str):
    caller, refusal = _authenticate(request, registry_name, name, "message/write")
    if refusal is not None:
        return refusal
    body, refusal = json_body(request)
    if refusal is not None:
        return refusal
    ids, problem = _ids(body)
    if ids is None:
        return error(400, problem)
    refusal = _data_endpoint_refusal(caller.cr)
    if refusal is not None:
        return refusal
    cr, by = caller.cr, f"gateway ({caller.token.name})"
    with transaction.atomic():
        pending = cr.messages.pending(caller.now).filter(pk__in=[i for i in ids if 0 < i <= MAX_ID])
        taken = set(pending.select_for_update().values_list("pk", flat=True))
        count = SyncMessage.objects.filter(pk__in=taken, acknowledged_at__isnull=True) \
            .update(acknowledged_at=caller.now, acknowledged_by=by)
        if count != len(taken):  # a concurrent ack won some rows (a database without row locks)
            taken = set(SyncMessage.objects.filter(pk__in=taken, acknowledged_at=caller.now, acknowledged_by=by)
                        .values_list("pk", flat=True))
        acknowledged = [i for i in ids if i in taken]
        unknown = [i for i in ids if i not in taken]
        changes = {"acknowledged": [None, acknowledged], "unknown": [None, unknown]}
        if caller.client:
            changes["client"] = [None, caller.client]
        record(Actor(caller.token.name, Source.API), "connectedRegistry.acknowledgeMessages", "connectedRegistry",
               cr.name, cr.registry.name, changes)
    log.info("gateway: %s acknowledged %d message(s) of %s (%d unknown)", caller.token.name, len(acknowledged),
             cr.name, len(unknown))
    return JsonResponse({"acknowledged": len(acknowledged), "unknown": unknown})
