"""Waiting on real processes in end-to-end tests: poll until something holds."""
from __future__ import annotations

from connected.registry_client import RegistryClient
from devtools.waiting import wait_for

__all__ = ["digest_at", "wait_for"]


def digest_at(registry, repo, tag):
    """The digest repo:tag has on the registry (a RegistryProcess), None while it has none."""
    with RegistryClient(registry.url) as client:
        try:
            return client.head_manifest(repo, tag)
        except Exception:
            return None
