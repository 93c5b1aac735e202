"""The token endpoint (distribution's token authentication protocol):

    GET /token/?service=<service>&scope=<scope>&scope=...   (HTTP Basic)
    -> 200 {"token", "access_token", "expires_in", "issued_at"}

Errors are JSON in the registry's shape, {"errors": [{"code", "message"}]}:
401 (with a Basic challenge) for refused credentials, and for a service no
registry here has (answered as an unknown token is: which registries exist
is nobody's business); 429 with Retry-After while a token is slowed down.
Only GET: clients that try the OAuth2 POST first fall back to GET on 405.
"""
from __future__ import annotations

import datetime as dt

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from connected.api.responses import allow

from . import jwt
from .authenticate import client_address, decide, find_target, refuse_unknown_service

CHALLENGE = 'Basic realm="Registry Portal token service", charset="UTF-8"'
CODES = {400: "UNSUPPORTED", 401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS"}


def _error(status: int, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"errors": [{"code": CODES.get(status, "DENIED"), "message": message}]},
                            status=status)
    for name, value in headers.items():
        response[name] = value
    return response


@csrf_exempt  # no cookies here; a client's OAuth2 POST must get the JSON 405, not a CSRF page
@never_cache
@allow("GET")
def token(request):
    service = request.GET.get("service", "")
    target = find_target(service)
    if target is None:
        decision = refuse_unknown_service(service, request.META.get("HTTP_AUTHORIZATION"))
    else:
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
