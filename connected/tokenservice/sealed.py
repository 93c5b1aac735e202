"""The worker's copy of sync-token passwords, encrypted at rest.

The sync engine authenticates to the registries as the connected registry's
sync token, through the token service, like a deployed connected registry
would: it must present the password. The portal keeps only a hash for
verification, plus this copy sealed with Fernet (AES-128-CBC + HMAC-SHA256)
under a key that is not in the database: PORTAL_WORKER_SECRETS_KEY, or a key
file created on first use in TOKEN_SERVICE_DIR with mode 600. A database
dump alone does not reveal a password. Web, worker and beat share the key
(the same data volume, or the same variable on every machine).
"""
from __future__ import annotations

import os
import threading

from cryptography.fernet import Fernet, InvalidToken

from .keys import ensure_private_dir, service_dir, write_private_file

KEY_FILE = "worker-secrets.key"
ENV_KEY = "PORTAL_WORKER_SECRETS_KEY"

_lock = threading.Lock()
_fernets: dict[str, Fernet] = {}


class Unsealable(Exception):
    """The copy cannot be decrypted (the key changed)."""


def _fernet() -> Fernet:
    key = os.environ.get(ENV_KEY)
    cache_key = "env" if key else str(service_dir())
    with _lock:
        if cache_key not in _fernets:
            if not key:
                path = ensure_private_dir(service_dir()) / KEY_FILE
                if not path.exists():
                    write_private_file(path, Fernet.generate_key())
                key = path.read_bytes().strip()
            _fernets[cache_key] = Fernet(key)
        return _fernets[cache_key]


def seal(clear: str) -> str:
    return _fernet().encrypt(clear.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        raise Unsealable("the worker's copy of the password cannot be decrypted with this portal's key "
                         f"({ENV_KEY} or {KEY_FILE} changed?): generate a new password") from None
