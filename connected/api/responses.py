"""Error answers in the registry's JSON shape."""
from __future__ import annotations

from django.http import JsonResponse

CODES = {400: "INVALID", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 405: "UNSUPPORTED",
         409: "CONFLICT", 413: "TOO_LARGE", 429: "TOOMANYREQUESTS"}


def error(status: int, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"errors": [{"code": CODES.get(status, "ERROR"), "message": message}]}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response
