"""The token service's signing key and its self-signed certificate.

Created on first use in TOKEN_SERVICE_DIR (under PORTAL_DATA_DIR, never in
the repository): one PEM file holding the private key and the certificate,
mode 600 in a directory of mode 700. Several processes (gunicorn workers,
Celery) may start at once: the file is written aside and linked into place,
so exactly one key wins and everyone reads that one.

Registries trust the certificate (their `rootcertbundle`); a token names it
in its header by `kid`, the libtrust key ID distribution matches (an RFC 7638
thumbprint is refused by distribution 2.8).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings

KEY_FILE = "signing-key.pem"
CERTIFICATE_DAYS = 3650
ALGORITHM = "RS256"


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    kid: str
    path: Path

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def libtrust_key_id(public_key) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32 without
    padding (48 characters), in 12 groups of 4 joined by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def service_dir() -> Path:
    return Path(settings.PORTAL["TOKEN_SERVICE_DIR"])


def ensure_private_dir(path: Path) -> Path:
    """Create path (mode 700) if needed; tighten it if it is looser."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, data: bytes) -> bool:
    """Write data to path with mode 600 unless path exists (another process
    won the race); True if this call wrote it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if path exists
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)


def _new_key_pem(issuer: str) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer} token signing"[:64])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=CERTIFICATE_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


_lock = threading.Lock()
_loaded: dict[Path, SigningKey] = {}


def signing_key() -> SigningKey:
    """The key, created on first use."""
    path = ensure_private_dir(service_dir()) / KEY_FILE
    with _lock:
        if path in _loaded:
            return _loaded[path]
        if not path.exists():
            write_private_file(path, _new_key_pem(settings.PORTAL["TOKEN_ISSUER"]))
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        cert = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE-----"):])
        loaded = SigningKey(key, cert, libtrust_key_id(cert.public_key()), path)
        _loaded[path] = loaded
        return loaded


def certificate_bundle() -> bytes:
    """What registries are given as rootcertbundle: the certificate (public)."""
    return signing_key().certificate_pem()
