"""A connected registry's connection state, derived from facts.

Pure: the caller gathers the facts (a probe of the registry, the last run,
settings) and the clock; derive_state() says which state holds and why, as
typed status details (type, code, description, timestamp) in the order an
operator should act on them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

ONLINE, OFFLINE, SYNCING, UNHEALTHY = "Online", "Offline", "Syncing", "Unhealthy"

UNREACHABLE = "Unreachable"
AUTHENTICATION_FAILED = "AuthenticationFailed"
SYNC_TOKEN_DISABLED = "SyncTokenDisabled"
DATA_ENDPOINT_DISABLED = "DataEndpointDisabled"
LAST_SYNC_FAILED = "LastSyncFailed"
BEHIND_PARENT = "BehindParent"


@dataclass(frozen=True)
class Probe:
    """What asking the connected registry's /v2/ found."""
    reachable: bool
    authenticated: bool | None = None  # None: not checked (no credentials to try)
    error: str = ""


@dataclass(frozen=True)
class HealthFacts:
    active: bool
    has_login_server: bool
    data_endpoint_enabled: bool
    sync_token_enabled: bool
    probe: Probe | None
    running: bool = False
    last_run_status: str | None = None
    last_run_error: str = ""
    last_sync_at: dt.datetime | None = None
    behind_since: dt.datetime | None = None  # the oldest change at the parent it has not got yet
    pending_changes: int = 0  # changes known at the parent and not yet applied
    registry_name: str = ""


def _detail(kind: str, code: str, description: str, now: dt.datetime) -> dict:
    return {"type": kind, "code": code, "description": description,
            "timestamp": now.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")}


def derive_state(facts: HealthFacts, now: dt.datetime, behind_after: dt.timedelta) -> tuple[str, list[dict]]:
    """(connection state, status details). Offline: never deployed, or not
    answering. Syncing: a run is at work (its problems still listed).
    Unhealthy: answering but something stops or spoils sync. Online otherwise."""
    if not facts.active or not facts.has_login_server:
        return OFFLINE, []
    details = []
    probe = facts.probe
    if probe is not None and not probe.reachable:
        details.append(_detail("Connectivity", UNREACHABLE, f"the connected registry does not answer: {probe.error}",
                               now))
        return OFFLINE, details
    if not facts.data_endpoint_enabled:
        details.append(_detail("Gateway", DATA_ENDPOINT_DISABLED,
                               f"the data endpoint of registry '{facts.registry_name}' is disabled: no sync message "
                               "is served and sync refuses", now))
    if not facts.sync_token_enabled:
        details.append(_detail("SyncToken", SYNC_TOKEN_DISABLED, "the sync token is disabled: sync is stopped", now))
    if probe is not None and probe.authenticated is False:
        details.append(_detail("Authentication", AUTHENTICATION_FAILED,
                               f"the sync token's credentials are refused: {probe.error}", now))
    if facts.last_run_status in ("failed", "partial"):
        details.append(_detail("Sync", LAST_SYNC_FAILED,
                               f"the last sync {facts.last_run_status}: {facts.last_run_error}".rstrip(": "), now))
    if facts.behind_since is not None and now - facts.behind_since > behind_after:
        hours = (now - facts.behind_since).total_seconds() / 3600
        changes = f"{facts.pending_changes} change{'s' if facts.pending_changes != 1 else ''}, " \
            if facts.pending_changes else ""
        details.append(_detail("Sync", BEHIND_PARENT, f"behind the parent by {changes}{hours:.1f} hours", now))
    if facts.running:
        return SYNCING, details
    return (UNHEALTHY if details else ONLINE), details
