"""The JWT a registry accepts, exactly as distribution 2.8 checks it:
RS256, a `kid` naming a certificate of its rootcertbundle, `aud` one string
(a list is refused), `exp`/`nbf`/`iat` integers (floats are refused), and
`access` = [{"type", "name", "actions"}]."""
from __future__ import annotations

import time
import uuid

import jwt as pyjwt
from django.conf import settings

from .keys import ALGORITHM, signing_key

# The registry allows 60 s of clock skew; nbf a little in the past covers a
# registry whose clock is slightly behind ours.
NOT_BEFORE_SKEW = 5


def claims(subject: str, service: str, access: list[dict], now: int | None = None,
           lifetime: int | None = None) -> dict:
    now = int(time.time()) if now is None else int(now)
    lifetime = int(settings.PORTAL["TOKEN_LIFETIME_SECONDS"] if lifetime is None else lifetime)
    return {"iss": settings.PORTAL["TOKEN_ISSUER"], "sub": subject, "aud": str(service),
            "exp": now + lifetime, "nbf": now - NOT_BEFORE_SKEW, "iat": now, "jti": uuid.uuid4().hex,
            "access": access}


def sign(payload: dict) -> str:
    key = signing_key()
    return pyjwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})


def issue(subject: str, service: str, access: list[dict]) -> tuple[str, dict]:
    """(the signed token, its claims)."""
    payload = claims(subject, service, access)
    return sign(payload), payload
