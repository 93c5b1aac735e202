"""Service names: what a registry's `auth: token` block calls `service`, the
`aud` of the tokens it accepts, and how the endpoint finds which registry a
request is about. Pure functions, no Django.

The top-level registry `MyAcrRegistry` is the service `myacrregistry`; its
connected registry `FactoryOne` is `myacrregistry/factoryone`. Names, not
login servers: a connected registry keeps its service when it is activated
at another address.
"""
from __future__ import annotations

SEPARATOR = "/"


def registry_service(registry_name: str) -> str:
    return registry_name.lower()


def connected_registry_service(registry_name: str, connected_registry_name: str) -> str:
    return f"{registry_name.lower()}{SEPARATOR}{connected_registry_name.lower()}"


def parse_service(service: str) -> tuple[str, str | None] | None:
    """'reg' -> ('reg', None); 'reg/cr' -> ('reg', 'cr'); anything else None.
    Registry names are letters and digits, so the separator is unambiguous."""
    parts = (service or "").split(SEPARATOR)
    if not 1 <= len(parts) <= 2 or not all(p.isalnum() and p.isascii() for p in parts):
        return None
    return parts[0], (parts[1] if len(parts) == 2 else None)


def realm(public_url: str) -> str:
    """The token endpoint under the portal's public URL."""
    return public_url.rstrip("/") + "/token/"
