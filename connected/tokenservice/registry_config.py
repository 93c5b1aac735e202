"""What a registry needs to use the portal as its token service: the
certificate bundle, the `auth: token` block, and, for a connected registry,
a complete distribution 2.8 config (storage, http, auth, notifications) so
that `docker-registry serve config.yml` is all an operator runs.

Files are JSON, which is YAML: no YAML library, no quoting surprises.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from . import naming
from .keys import certificate_bundle

BUNDLE_FILE = "token-cert-bundle.pem"
AUTH_FILE = "auth-token.yml"
CONFIG_FILE = "config.yml"


def service_of(registry, cr=None) -> str:
    if cr is None:
        return naming.registry_service(registry.name)
    return naming.connected_registry_service(registry.name, cr.name)


def auth_block(service: str, bundle_path: Path | str, public_url: str | None = None) -> dict:
    """The `auth:` section: all four keys distribution requires."""
    return {"token": {"realm": naming.realm(public_url or settings.PORTAL["PUBLIC_URL"]), "service": service,
                      "issuer": settings.PORTAL["TOKEN_ISSUER"], "rootcertbundle": str(bundle_path)}}


def auth_yaml(block: dict) -> str:
    """The block as YAML to paste into a registry's config (JSON strings are
    valid YAML scalars)."""
    token = block["token"]
    return "auth:\n  token:\n" + "".join(f"    {key}: {json.dumps(token[key])}\n"
                                          for key in ("realm", "service", "issuer", "rootcertbundle"))


def write_bundle(output_dir: Path) -> Path:
    """The certificate (public) that registries verify tokens with."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / BUNDLE_FILE
    path.write_bytes(certificate_bundle())
    return path


def export(output_dir: Path | str, service: str | None, public_url: str | None = None) -> dict:
    """Write the bundle and, for a service, the auth block; return what was
    written: {"bundle", "authBlock"?, "auth"?, "realm", "issuer"}."""
    output_dir = Path(output_dir).resolve()
    bundle = write_bundle(output_dir)
    result = {"bundle": str(bundle), "realm": naming.realm(public_url or settings.PORTAL["PUBLIC_URL"]),
              "issuer": settings.PORTAL["TOKEN_ISSUER"]}
    if service:
        block = auth_block(service, bundle, public_url)
        (output_dir / AUTH_FILE).write_text(auth_yaml(block))
        result.update(service=service, authBlock=str(output_dir / AUTH_FILE), auth=block)
    return result


def default_http_addr(cr) -> str:
    """Where the instance listens: the port of its login server (all
    interfaces), else 5000."""
    if cr.login_server:
        parts = urlsplit(cr.login_server)
        return f":{parts.port or (443 if parts.scheme == 'https' else 80)}"
    return ":5000"


def notifications_block(events_secret: str, public_url: str | None = None, name: str = "registry-portal") -> dict:
    """The `notifications:` section that sends a registry's events to the
    portal's /events/ with its events secret. Pulls and blob events carry no
    change of a tag: they are not sent."""
    public_url = (public_url or settings.PORTAL["PUBLIC_URL"]).rstrip("/")
    return {"events": {"includereferences": True}, "endpoints": [{
        "name": name, "url": f"{public_url}/events/",
        "headers": {"Authorization": [f"Bearer {events_secret}"]},
        "timeout": "5s", "threshold": 5, "backoff": "2s",
        "ignoredmediatypes": ["application/octet-stream"],
        "ignore": {"actions": ["pull", "mount"]}}]}


def distribution_config(cr, bundle_path: Path | str, storage_dir: str, http_addr: str,
                        public_url: str | None = None, events_secret: str | None = None) -> dict:
    public_url = (public_url or settings.PORTAL["PUBLIC_URL"]).rstrip("/")
    service = service_of(cr.registry, cr)
    config = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": service}},
        "storage": {"filesystem": {"rootdirectory": storage_dir}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        # secret: signs upload state; one per instance, so the file is mode 600.
        "http": {"addr": http_addr, "secret": secrets.token_urlsafe(32),
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": auth_block(service, bundle_path, public_url),
        "health": {"storagedriver": {"enabled": True, "interval": "30s", "threshold": 3}},
    }
    if events_secret:
        config["notifications"] = notifications_block(events_secret, public_url)
    return config


def write_registry_config(cr, output_dir: Path | str, storage_dir: str | None = None, http_addr: str | None = None,
                          public_url: str | None = None, actor=None) -> dict:
    """config.yml and the bundle in output_dir; the storage under it unless
    told otherwise. Returns the paths and the command that starts it."""
    output_dir = Path(output_dir).resolve()
    bundle = write_bundle(output_dir)
    storage = storage_dir or str(output_dir / "storage")
    # The instance's events (pushes at a ReadWrite one, the syncs' writes)
    # reach the portal with a secret of its own, new with each config.
    from connected.events import generate_secret

    _source, events_secret = generate_secret(cr.registry, cr, actor)
    config = distribution_config(cr, bundle, storage, http_addr or default_http_addr(cr), public_url, events_secret)
    path = output_dir / CONFIG_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    os.chmod(path, 0o600)
    return {"registryConfig": str(path), "tokenCertBundle": str(bundle),
            "start": f"docker-registry serve {path}", "service": config["auth"]["token"]["service"]}
