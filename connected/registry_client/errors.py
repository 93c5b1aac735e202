"""The errors of the registry client. Messages name the request (method and
path, never the query, which may carry upload state) and the registry's own
error code; they never contain credentials or tokens."""
from __future__ import annotations

import json

import httpx

# Error codes of the distribution spec that mean "this thing does not exist".
NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})


class RegistryError(Exception):
    """Any failure talking to a registry. status is the HTTP status (None when
    no answer came), code the first error code of the body, if any."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(RegistryError):
    """404, or an error code saying the repository, manifest or blob is unknown."""


class AuthError(RegistryError):
    """Credentials refused: 401 after authenticating, 403, or the token service said no."""


class Unreachable(RegistryError):
    """No answer: connection refused or reset, or timed out, after the retries."""


class DigestMismatch(RegistryError):
    """Content did not hash to the digest it was supposed to have."""


def describe(request: httpx.Request) -> str:
    """'GET /v2/x/manifests/y': enough to know which call failed, nothing secret."""
    return f"{request.method} {request.url.copy_with(query=None, fragment=None, username=None, password=None)}"


def error_code_and_message(response: httpx.Response) -> tuple[str | None, str]:
    """The first {"errors":[{"code","message"}]} entry of an error body, if any."""
    try:
        body = json.loads(response.content or b"null")
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, ""


def error_for_response(response: httpx.Response, authenticated: bool = True) -> RegistryError:
    """The RegistryError subclass that fits a failed response (its body must be read)."""
    code, detail = error_code_and_message(response)
    status = response.status_code
    message = f"{describe(response.request)}: {status}"
    if code:
        message += f" {code}"
    if detail:
        message += f" ({detail[:200]})"
    if status == 404 or code in NOT_FOUND_CODES:
        return NotFound(message, status, code)
    if status == 403 or (status == 401 and authenticated):
        return AuthError(message, status, code)
    if status == 401:
        return AuthError(message + " (no credentials given)", status, code)
    return RegistryError(message, status, code)
