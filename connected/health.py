"""A connected registry's connection state, derived from facts.

Pure: the caller gathers the facts (a probe of the registry, the last run,
settings) and the clock; derive_state() says which state holds and why, as
typed status details (type, code, description, timestamp) in the order an
operator should act on them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import schedule

ONLINE, OFFLINE, SYNCING, UNHEALTHY = "Online", "Offline", "Syncing", "Unhealthy"

UNREACHABLE = "Unreachable"
AUTHENTICATION_FAILED = "AuthenticationFailed"
SYNC_TOKEN_DISABLED = "SyncTokenDisabled"
DATA_ENDPOINT_DISABLED = "DataEndpointDisabled"
LAST_SYNC_FAILED = "LastSyncFailed"
BEHIND_PARENT = "BehindParent"
MESSAGES_EXPIRED = "MessagesExpired"

CONTINUOUS_SCHEDULE = "* * * * *"
# The least time a pending sync message may wait before it counts as late
# (see message_grace).
MIN_MESSAGE_GRACE = dt.timedelta(seconds=120)
DEFAULT_SYNC_WINDOW = dt.timedelta(hours=1)


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
    # The last run failed because a registry or the token service refused the
    # sync token's credentials (last_run_error says which and why).
    credentials_refused: bool = False
    last_sync_at: dt.datetime | None = None
    # Hours rule: when the latest sync did not succeed, since when (the last
    # successful sync, or the creation) it has not caught up.
    behind_since: dt.datetime | None = None
    pending_changes: int = 0  # sync messages waiting (changes known and not yet applied)
    oldest_pending_at: dt.datetime | None = None  # when the oldest of them was created
    # Sync messages that expired unapplied after the last successful full
    # comparison finished (none has caught up with them yet).
    expired_messages: int = 0
    # When messages may move: the cron (continuous or not) and the window.
    sync_schedule: str = CONTINUOUS_SCHEDULE
    sync_window: dt.timedelta | None = None
    registry_name: str = ""
    sync_token_name: str = ""


def sync_token_disabled_text(registry_name: str, token_name: str) -> str:
    """Why sync is stopped when the sync token is disabled, with the fix."""
    return (f"its sync token '{token_name}' is disabled (enable it: python manage.py acr token update "
            f"--registry {registry_name} --name {token_name} --status enabled).")


def data_endpoint_disabled_text(registry_name: str) -> str:
    """Why sync refuses while the registry's data endpoint is disabled, with the fix."""
    return (f"the data endpoint of registry '{registry_name}' is disabled (enable it: python manage.py acr update "
            f"--name {registry_name} --data-endpoint-enabled).")


def unreachable_description(error: str) -> str:
    return f"the connected registry does not answer: {error}"


def _detail(kind: str, code: str, description: str, now: dt.datetime) -> dict:
    return {"type": kind, "code": code, "description": description,
            "timestamp": now.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")}


def message_grace(dispatch_interval_seconds: float) -> dt.timedelta:
    """How long a pending sync message may wait, while it can move, before
    the connected registry counts as behind: a few dispatch rounds, at least
    MIN_MESSAGE_GRACE."""
    return max(MIN_MESSAGE_GRACE, dt.timedelta(seconds=4 * dispatch_interval_seconds))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def late_since(now: dt.datetime, grace: dt.timedelta, sync_schedule: str = CONTINUOUS_SCHEDULE,
               sync_window: dt.timedelta | None = None) -> dt.datetime | None:
    """Pending sync messages created at or before the instant returned are
    late at now: since they were created, sync had grace to apply them.
    Continuous: now - grace. Scheduled: messages move only inside windows, so
    a message is late once a window gave it grace (the current window, if it
    opened more than grace ago, else the previous one); waiting for the next
    window is normal. None when no such window is known."""
    if (sync_schedule or CONTINUOUS_SCHEDULE).split() == CONTINUOUS_SCHEDULE.split():
        return now - grace
    window = sync_window or DEFAULT_SYNC_WINDOW
    current = schedule.window_containing(sync_schedule, window, now)
    if current is not None:
        start, _end = current
        if start + grace <= now:
            return now - grace  # created up to grace ago: this window had time to apply it
        before = start - dt.timedelta(microseconds=1)
    else:
        before = now
    # The last window that ended by then: a message created up to grace before its end had time in it.
    opening = next(schedule.occurrences_before(sync_schedule, before))
    previous = schedule.window_containing(sync_schedule, window, opening)
    return previous[1] - grace if previous is not None else None


def behind_description(facts: HealthFacts, now: dt.datetime, behind_after: dt.timedelta,
                       grace: dt.timedelta) -> str | None:
    """Why the connected registry is behind its parent, or None when it is not.

    By messages: its oldest pending sync message waited longer than grace
    while it could have moved (see late_since). By hours: the latest sync
    did not succeed and the last success is more than behind_after ago."""
    by_messages = None
    if facts.pending_changes and facts.oldest_pending_at is not None:
        try:
            cutoff = late_since(now, grace, facts.sync_schedule, facts.sync_window)
        except (ValueError, KeyError, TypeError, StopIteration):  # a schedule stored before a rule existed
            cutoff = now - grace
        if cutoff is not None and facts.oldest_pending_at <= cutoff:
            waited = (now - facts.oldest_pending_at).total_seconds() / 3600
            by_messages = f"{_plural(facts.pending_changes, 'change')} (the oldest waiting {waited:.1f} hours)"
    by_hours = None
    if facts.behind_since is not None and now - facts.behind_since > behind_after:
        by_hours = (now - facts.behind_since).total_seconds() / 3600
    if by_messages and by_hours is not None:
        return f"behind the parent by {by_messages}; no successful sync for {by_hours:.1f} hours"
    if by_messages:
        return f"behind the parent by {by_messages}"
    if by_hours is not None:
        changes = f"{_plural(facts.pending_changes, 'change')}, " if facts.pending_changes else ""
        return f"behind the parent by {changes}{by_hours:.1f} hours"
    return None


def derive_state(facts: HealthFacts, now: dt.datetime, behind_after: dt.timedelta,
                 grace: dt.timedelta = MIN_MESSAGE_GRACE) -> tuple[str, list[dict]]:
    """(connection state, status details). Offline: never deployed, or not
    answering. Syncing: a run is at work (its problems still listed).
    Unhealthy: answering but something stops or spoils sync. Online otherwise.
    behind_after: the hours rule; grace: how long a sync message may wait
    while it can move (see behind_description)."""
    if not facts.active or not facts.has_login_server:
        return OFFLINE, []
    details = []
    probe = facts.probe
    if probe is not None and not probe.reachable:
        details.append(_detail("Connectivity", UNREACHABLE, unreachable_description(probe.error), now))
        return OFFLINE, details
    if not facts.data_endpoint_enabled:
        details.append(_detail("Gateway", DATA_ENDPOINT_DISABLED,
                               "no sync message is served and sync refuses: "
                               + data_endpoint_disabled_text(facts.registry_name), now))
    if not facts.sync_token_enabled:
        details.append(_detail("SyncToken", SYNC_TOKEN_DISABLED, "sync is stopped: "
                               + sync_token_disabled_text(facts.registry_name, facts.sync_token_name), now))
    if probe is not None and probe.authenticated is False:
        details.append(_detail("Authentication", AUTHENTICATION_FAILED,
                               f"the sync token's credentials are refused: {probe.error}", now))
    elif facts.credentials_refused:
        details.append(_detail("Authentication", AUTHENTICATION_FAILED,
                               f"the last sync was refused its credentials: {facts.last_run_error}", now))
    if facts.last_run_status in ("failed", "partial") and not facts.credentials_refused:
        details.append(_detail("Sync", LAST_SYNC_FAILED,
                               f"the last sync {facts.last_run_status}: {facts.last_run_error}".rstrip(": "), now))
    behind = behind_description(facts, now, behind_after, grace)
    if behind:
        details.append(_detail("Sync", BEHIND_PARENT, behind, now))
    if facts.expired_messages:
        details.append(_detail("Sync", MESSAGES_EXPIRED,
                               f"{_plural(facts.expired_messages, 'sync message')} expired before "
                               f"{'they were' if facts.expired_messages != 1 else 'it was'} applied; "
                               "a full comparison catches up", now))
    if facts.running:
        return SYNCING, details
    return (UNHEALTHY if details else ONLINE), details
