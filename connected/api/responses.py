"""Error answers in the registry's JSON shape."""
from __future__ import annotations

import functools

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

CODES = {400: "INVALID", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 405: "UNSUPPORTED",
         409: "CONFLICT", 413: "TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "TOOMANYREQUESTS"}


def error(status: int, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"errors": [{"code": CODES.get(status, "ERROR"), "message": message}]}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def unless_json(request) -> JsonResponse | None:
    """415 naming Content-Type unless the body is declared JSON (application/json,
    or a +json type such as distribution's events type); None when it is."""
    media_type = request.content_type or ""
    if not media_type and not request.META.get("CONTENT_LENGTH", "").strip("0"):
        return None  # no body at all: the body's own rule names what is missing
    if media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json")):
        return None
    return error(415, f"Content-Type: must be application/json (or an application/...+json type), "
                      f"not '{media_type or 'none'}'")


def json_body(request) -> tuple[bytes | None, JsonResponse | None]:
    """(the raw body, None), or (None, the refusal: 415 unless it is declared
    JSON, 413 past DATA_UPLOAD_MAX_MEMORY_SIZE)."""
    refusal = unless_json(request)
    if refusal is not None:
        return None, refusal
    try:
        return request.body, None
    except RequestDataTooBig:
        return None, error(413, f"body: too large (at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes)")


def allow(*methods):
    """Only these methods; a JSON 405 naming them otherwise."""
    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                return error(405, f"method {request.method} is not allowed here: use {' or '.join(methods)}",
                             Allow=", ".join(methods))
            return view(request, *args, **kwargs)
        return wrapped
    return decorate
