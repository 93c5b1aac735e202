"""Authentication against a registry: none, HTTP Basic, or bearer tokens from
the token service the registry's challenge names.

The registry says what it wants in its 401 challenge; after the first one we
know the scheme and, for bearer, the realm and service, so later requests
authenticate up front (a streamed upload body cannot be sent twice). Tokens
are cached per scope and shared by all threads using the client."""
from __future__ import annotations

import base64
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

import httpx

from .errors import AuthError, RegistryError, error_for_response

log = logging.getLogger(__name__)

Scopes = tuple[str, ...]

# A token is renewed this long before it expires, so that a request never
# arrives at the registry with a token that has just run out.
EXPIRY_MARGIN_SECONDS = 30.0
# The token spec's default lifetime when the answer has no expires_in.
DEFAULT_TOKEN_SECONDS = 60

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def pull_scope(repo: str) -> Scopes:
    return (f"repository:{repo}:pull",)


def push_scope(repo: str) -> Scopes:
    return (f"repository:{repo}:pull,push",)


def delete_scope(repo: str) -> Scopes:
    return (f"repository:{repo}:delete",)


CATALOG_SCOPE: Scopes = ("registry:catalog:*",)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """'Bearer realm="x",service="y"' -> ("bearer", {"realm": "x", "service": "y"})."""
    header = (header or "").strip()
    scheme, _, rest = header.partition(" ")
    params = {}
    for match in _PARAM.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = value.replace('\\"', '"')
    return scheme.lower(), params


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic()


class Authenticator:
    """Gives each request its Authorization header and reacts to challenges.

    fetch sends a request (with the client's retries) and returns the
    response, already read."""

    def __init__(self, fetch: Callable[[httpx.Request], httpx.Response],
                 username: str | None = None, password: str | None = None):
        self._fetch = fetch
        self._username = username
        self._password = password
        self._lock = threading.Lock()
        self._scheme: str | None = None
        self._realm: str | None = None
        self._service: str | None = None
        self._tokens: dict[Scopes, _Token] = {}
        self._fetch_locks: dict[Scopes, threading.Lock] = {}

    @property
    def has_credentials(self) -> bool:
        return bool(self._username)

    @property
    def scheme(self) -> str | None:
        return self._scheme

    def authorize(self, scopes: Scopes) -> tuple[dict[str, str], str | None]:
        """The headers to send for a request needing scopes, and the token sent
        (None if no token), to hand back to on_challenge."""
        scheme = self._scheme
        if scheme == "basic":
            raw = f"{self._username}:{self._password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}, None
        if scheme == "bearer":
            token = self._token(scopes)
            return {"Authorization": f"Bearer {token}"}, token
        return {}, None

    def on_challenge(self, response: httpx.Response, scopes: Scopes, sent_token: str | None,
                     sent_auth: bool) -> bool:
        """A 401 came back. True if the request should be sent again (with
        fresh headers from authorize); False if that cannot help."""
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self._username or (sent_auth and self._scheme == "basic"):
                return False
            with self._lock:
                self._scheme = "basic"
            return True
        if scheme == "bearer" and params.get("realm"):
            with self._lock:
                self._scheme = "bearer"
                self._realm = params["realm"]
                self._service = params.get("service")
                if sent_token is not None and self._tokens.get(scopes, _Token("", 0)).value == sent_token:
                    # The registry refused a cached token: get a fresh one.
                    del self._tokens[scopes]
            wanted = tuple((params.get("scope") or "").split())
            extra = tuple(s for s in wanted if s not in scopes)
            if extra:
                # The registry asks for more than this call thought it needs
                # (for example a mount's source repository): ask for all of it.
                self._token(scopes, extra=extra, fresh=True)
            return True
        return False

    def _token(self, scopes: Scopes, extra: Scopes = (), fresh: bool = False) -> str:
        with self._lock:
            cached = self._tokens.get(scopes)
            if cached and not fresh and cached.renew_at > time.monotonic():
                return cached.value
            fetch_lock = self._fetch_locks.setdefault(scopes, threading.Lock())
        # One fetch per scope at a time; threads that waited use its result.
        with fetch_lock:
            with self._lock:
                now_cached = self._tokens.get(scopes)
                if now_cached and now_cached is not cached and now_cached.renew_at > time.monotonic():
                    return now_cached.value
                realm, service = self._realm, self._service
            token = self._request_token(realm, service, scopes + extra)
            with self._lock:
                self._tokens[scopes] = token
            return token.value

    def _request_token(self, realm: str, service: str | None, scopes: Scopes) -> _Token:
        params = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in scopes)
        if self._username:
            params.append(("account", self._username))
        auth = httpx.BasicAuth(self._username, self._password or "") if self._username else None
        request = httpx.Request("GET", realm, params=params)
        if auth is not None:
            request = next(auth.auth_flow(request))
        response = self._fetch(request)
        what = f"token service {httpx.URL(realm).copy_with(query=None)} for scope {' '.join(scopes) or '(none)'}"
        if response.status_code in (401, 403):
            raise AuthError(f"{what} refused the credentials: {response.status_code}", response.status_code)
        if response.status_code != 200:
            error = error_for_response(response)
            raise RegistryError(f"{what} failed: {error}", response.status_code, error.code)
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0
        if not value:
            raise AuthError(f"{what} answered without a token", response.status_code)
        margin = min(EXPIRY_MARGIN_SECONDS, lifetime / 2)
        log.debug("got a token from %s, valid %ss", what, lifetime)
        return _Token(str(value), time.monotonic() + lifetime - margin)
