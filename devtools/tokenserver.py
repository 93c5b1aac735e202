"""Test-only auth for real registries: a bearer token service distribution
2.8 accepts, and htpasswd files for its Basic auth.

    server = TokenServer(tmp_path, users={"alice": "pw"},
                         policy={"alice": {"repository:*": {"pull", "push"}}}).start()
    registry = start_registry(root, auth=server.registry_auth())
    ...
    server.stop()

Policy: user -> {"<type>:<name glob>": actions}; "registry:catalog" with {"*"}
lets a user list the catalog. A policy for user "" is used for requests
without credentials (none: they are refused). What a request asks beyond the
policy is left out of the token, as real token services do; the registry then
refuses the call. Not for production: keys live in memory and on local disk.
"""
from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def libtrust_key_id(public_key) -> str:
    """The key ID distribution matches a JWT's kid against: SHA-256 of the DER
    SubjectPublicKeyInfo, first 30 bytes, base32, in 12 groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def write_htpasswd(path: Path, users: dict[str, str], realm: str = "test-registry") -> dict:
    """Write an htpasswd file (bcrypt, the only hash distribution reads) and
    return the registry's auth config block for it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Cost 4 (the minimum): the registry checks the hash on every request.
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return {"htpasswd": {"realm": realm, "path": str(path)}}


def _self_signed(common_name: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, cert


class TokenServer:
    def __init__(self, workdir: Path, users: dict[str, str], policy: dict[str, dict[str, set[str]]],
                 service: str = "test-registry", issuer: str = "test-token-issuer",
                 token_seconds: int = 300, key_header: str = "kid"):
        self.workdir = Path(workdir)
        self.users = dict(users)
        self.policy = policy
        self.service = service
        self.issuer = issuer
        self.token_seconds = token_seconds
        self.key_header = key_header  # "kid" (libtrust key ID) or "x5c"
        self.cert_path = self.workdir / "token-cert-bundle.pem"
        self.requests: list[tuple[str, tuple[str, ...]]] = []  # (user, scopes) of each token asked for
        self._key, self._cert = _self_signed(issuer)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_auth(self) -> dict:
        """The auth block for devtools.processes.start_registry(auth=…)."""
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert_path)}}

    def start(self) -> "TokenServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tokenserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- issuing ---------------------------------------------------------------

    def check_user(self, authorization: str | None) -> str | None:
        """The user a Basic Authorization header proves, "" if none was sent
        (anonymous), None if it is wrong."""
        if not authorization:
            return ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if user in self.users and self.users[user] == password else None

    def granted(self, user: str, scope: str) -> dict | None:
        """One access entry for a scope 'type:name:actions', cut to the policy."""
        parts = scope.split(":")
        if len(parts) < 3:
            return None
        kind, name, actions = parts[0], ":".join(parts[1:-1]), set(parts[-1].split(","))
        allowed: set[str] = set()
        for pattern, rule_actions in self.policy.get(user, {}).items():
            rule_kind, _, rule_name = pattern.partition(":")
            if rule_kind == kind and fnmatch.fnmatchcase(name, rule_name):
                allowed |= set(rule_actions)
        given = sorted(actions if "*" in allowed else actions & allowed)
        return {"type": kind, "name": name, "actions": given}

    def issue(self, user: str, scopes: list[str]) -> str:
        now = int(time.time())
        access = [a for a in (self.granted(user, s) for s in scopes) if a is not None]
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.token_seconds,
                  "nbf": now - 1, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        if self.key_header == "x5c":
            der = self._cert.public_bytes(serialization.Encoding.DER)
            headers = {"x5c": [base64.b64encode(der).decode()]}
        else:
            headers = {"kid": libtrust_key_id(self._cert.public_key())}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                if url.path != "/token":
                    return self._reply(404, {"error": "not found"})
                query = parse_qs(url.query)
                user = server.check_user(self.headers.get("Authorization"))
                if user is None or (user == "" and "" not in server.policy):
                    return self._reply(401, {"error": "invalid credentials"},
                                       {"WWW-Authenticate": 'Basic realm="test-token-service"'})
                if query.get("service", [server.service])[0] != server.service:
                    return self._reply(400, {"error": "unknown service"})
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                server.requests.append((user, tuple(scopes)))
                token = server.issue(user, scopes)
                self._reply(200, {"token": token, "access_token": token, "expires_in": server.token_seconds,
                                  "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()})

            def _reply(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):
                pass  # request lines hold no secrets, but tests need no noise

        return Handler
