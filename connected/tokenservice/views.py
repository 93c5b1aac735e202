"""The token endpoint (distribution's token authentication protocol):

    GET /token/?service=<service>&scope=<scope>&scope=...   (HTTP Basic)
    -> 200 {"token", "access_token", "expires_in", "issued_at"}

Errors are JSON in the registry's shape, {"errors": [{"code", "message"}]}:
400 for an unknown service, 401 (with a Basic challenge) for refused
credentials, 429 with Retry-After while a token is slowed down. Only GET:
clients that try the OAuth2 POST first fall back to GET on 405.
"""
from __future__ import annotations

import datetime as dt

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import jwt
from .authenticate import client_address, decide, find_target

CHALLENGE = 'Basic realm="Registry Portal token service", charset="UTF-8"'
CODES = {400: "UNSUPPORTED", 401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS"}


def _error(status: int, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"errors": [{"code": CODES.get(status, "DENIED"), "message": message}]},
                            status=status)
    for name, value in headers.items():
        response[name] = value
    return response


@never_cache
@require_GET
def token(request):
    service = request.GET.get("service", "")
    target = find_target(service)
    if target is None:
        return _error(400, f"unknown service '{service[:100]}': a registry or connected registry of this "
                           "portal (e.g. myacrregistry or myacrregistry/myconnectedregistry)")
    decision = decide(target, request.META.get("HTTP_AUTHORIZATION"), request.GET.getlist("scope"),
                      client=client_address(request.META))
    if decision.status == 429:
        return _error(429, decision.message, **{"Retry-After": str(decision.retry_after)})
    if decision.status != 200:
        return _error(decision.status, decision.message, **({"WWW-Authenticate": CHALLENGE}
                                                              if decision.status == 401 else {}))
    signed, claims = jwt.issue(decision.token.name, target.service, decision.access)
    issued = dt.datetime.fromtimestamp(claims["iat"], dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return JsonResponse({"token": signed, "access_token": signed, "expires_in": claims["exp"] - claims["iat"],
                         "issued_at": issued})
