"""POST /events/: distribution webhook notifications.

Authenticated per registry by its events secret in the Authorization header
(`Bearer <secret>`, set in the registry's notifications.endpoints[].headers;
`acr events-secret generate` makes one). The secret says which registry
sends. Every event is stored once (distribution resends until it gets a
2xx, so a duplicate is answered 200 too); pushes and deletes of manifests
become sync messages (connected.events), and the connected registries
concerned are dispatched at once rather than at beat's next tick.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from connected import events
from connected.messages import EventSource

from .responses import allow, error, json_body

log = logging.getLogger(__name__)

CHALLENGE = 'Bearer realm="Registry Portal events"'


def _secret(request) -> str | None:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@csrf_exempt
@allow("POST")
def receive(request):
    secret = _secret(request)
    source = EventSource.authenticate(secret)
    if source is None and secret is None:
        return error(401, "Authorization: Bearer <events secret> required; the secret of a registry of this "
                          "portal (python manage.py acr events-secret generate)", WWW_Authenticate=CHALLENGE)
    if source is None:
        return error(401, "Authorization: this events secret is not (or no longer) that of any registry of "
                          "this portal; a new secret replaces the old one at once: put the current one in the "
                          "registry's notifications block", WWW_Authenticate=CHALLENGE)
    body, refusal = json_body(request)
    if refusal is not None:
        return refusal
    try:
        parsed = events.parse_envelope(body)
    except events.EnvelopeError as e:
        return error(400, str(e))
    with transaction.atomic():
        outcome = events.receive(source, parsed)
        concerned = set(outcome.concerned)
        if concerned:
            transaction.on_commit(lambda: _dispatch(concerned))
    log.info("events from %s: %s", source.describe(), outcome.as_json())
    return JsonResponse(outcome.as_json())


def _dispatch(pks) -> None:
    from connected.sync.dispatch import dispatch_now

    try:
        dispatch_now(pks)
    except Exception:  # the events are stored; beat dispatches them at its next tick
        log.exception("dispatching after events failed")
