"""Waiting on real processes in end-to-end tests: poll until something holds."""
from __future__ import annotations

import time

from connected.registry_client import RegistryClient


def wait_for(predicate, timeout, what, poll=0.2):
    """predicate()'s first truthy value within timeout seconds; AssertionError naming what otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def digest_at(registry, repo, tag):
    """The digest repo:tag has on the registry (a RegistryProcess), None while it has none."""
    with RegistryClient(registry.url) as client:
        try:
            return client.head_manifest(repo, tag)
        except Exception:
            return None
