"""The periodic health check: gather each connected registry's facts, derive
its connection state (connected.health), store it and its history.

Beat runs check_all() every PORTAL_HEALTH_CHECK_INTERVAL seconds; the sync
runner records the states it sets through record_state() too, so the history
holds every change whoever made it.
"""
from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from . import health
from .models import ConnectedRegistry, ConnectionStateChange, SyncRun
from .registry_client import RegistryError, ping

log = logging.getLogger(__name__)

FINISHED_SYNCS = (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL, SyncRun.Status.FAILED)


def record_state(cr: ConnectedRegistry, state: str, details: list[dict], reached: bool = False) -> bool:
    """Store state and details; a change is added to the history. Syncing is
    transient (a continuous registry passes through it every few seconds) and
    is not kept there; a change is judged against the last state the history
    holds, so a change made elsewhere is not lost. reached: the portal heard
    from the registry (last activity). Returns whether the history grew."""
    now = timezone.now()
    with transaction.atomic():
        row = ConnectedRegistry.objects.filter(pk=cr.pk).values_list("connection_state", "status_details").first()
        if row is None:
            return False  # deleted meanwhile
        current, stored_details = row
        details = since_first_seen(details, stored_details)
        fields = {"connection_state": state, "status_details": details}
        if reached:
            fields["last_activity_at"] = now
        ConnectedRegistry.objects.filter(pk=cr.pk).update(**fields)
        if state == health.SYNCING:
            return False
        last = ConnectionStateChange.objects.filter(connected_registry_id=cr.pk).first()
        previous = last.state if last else (current if current != health.SYNCING else health.OFFLINE)
        if previous == state:
            return False
        ConnectionStateChange.objects.create(connected_registry_id=cr.pk, at=now, previous_state=previous,
                                             state=state, status_details=details)
    return True


def since_first_seen(details: list[dict], stored: list[dict] | None) -> list[dict]:
    """details, each with the timestamp of the same problem (type and code)
    already stored: a detail's timestamp says since when it holds, not when
    it was last checked."""
    first_seen = {(d.get("type"), d.get("code")): d.get("timestamp") for d in stored or [] if d.get("timestamp")}
    return [{**d, "timestamp": first_seen.get((d.get("type"), d.get("code")), d.get("timestamp"))}
            for d in details]


def probe(cr: ConnectedRegistry) -> health.Probe:
    """Ask the connected registry's /v2/ whether it answers (200 or 401).
    Anonymous on purpose: a token request every few seconds per registry
    would cost the token service a slow password hash each, and a stale
    password would count towards the token's failure limit. Refused
    credentials show up through the sync runs instead."""
    timeout = min(5.0, settings.PORTAL["REGISTRY_TIMEOUT_SECONDS"])
    try:
        ping(cr.login_server, timeout=timeout)
    except RegistryError as e:
        return health.Probe(reachable=False, error=str(e))
    return health.Probe(reachable=True)


def facts_of(cr: ConnectedRegistry, probed: health.Probe | None,
             now: dt.datetime | None = None) -> health.HealthFacts:
    now = now or timezone.now()
    runs = cr.runs.order_by("-queued_at", "-pk")
    running = runs.filter(status=SyncRun.Status.RUNNING).exists()
    # A run refused before it started (a disabled sync token, a disabled data
    # endpoint) says nothing of sync itself: its blocker is a fact of its own,
    # listed while it holds, gone when it is lifted.
    last = runs.filter(status__in=FINISHED_SYNCS).exclude(error__startswith=SyncRun.REFUSED_PREFIX).first()
    token = cr.sync_token_or_none()
    last_error = last.error if last else ""
    credentials_refused = last_error.startswith(SyncRun.CREDENTIALS_REFUSED_PREFIX)
    last_error = last_error.removeprefix(SyncRun.CREDENTIALS_REFUSED_PREFIX)
    # Behind by hours: since the last successful sync (or since it was
    # created) when the latest sync did not succeed.
    behind_since = None
    if last is None or last.status != SyncRun.Status.SUCCEEDED:
        behind_since = cr.last_sync_at or cr.created_at
    # Behind by messages: the pending ones (health.behind_description judges
    # whether the oldest waited too long for the schedule).
    pending = cr.messages.pending(now).aggregate(count=Count("pk"), oldest=Min("created_at"))
    # Expired messages are caught up by the next successful full comparison.
    caught_up = runs.filter(scope=SyncRun.Scope.FULL, status=SyncRun.Status.SUCCEEDED,
                            started_at__isnull=False).order_by("-started_at").values_list("started_at", flat=True)
    expired = cr.messages.lost(now, caught_up.first())
    return health.HealthFacts(
        active=cr.activation_status == ConnectedRegistry.Activation.ACTIVE, has_login_server=bool(cr.login_server),
        data_endpoint_enabled=cr.registry.data_endpoint_enabled,
        sync_token_enabled=token is None or token.status == token.Status.ENABLED,
        probe=probed, running=running, last_run_status=last.status if last else None,
        last_run_error=last_error[:300], credentials_refused=credentials_refused, last_sync_at=cr.last_sync_at,
        behind_since=behind_since,
        pending_changes=pending["count"], oldest_pending_at=pending["oldest"], expired_messages=expired.count(),
        sync_schedule=cr.sync_schedule, sync_window=_window_of(cr), registry_name=cr.registry.name,
        sync_token_name=token.name if token is not None else "")


def _window_of(cr: ConnectedRegistry) -> dt.timedelta | None:
    """The sync window as a duration (None for continuous sync, or a value
    stored before a rule existed: health then assumes the default window)."""
    try:
        return cr.sync_window_delta()
    except ValidationError:
        return None


def message_grace() -> dt.timedelta:
    """How long a pending sync message may wait, while it can move, before
    its connected registry counts as behind (see health.message_grace)."""
    return health.message_grace(settings.PORTAL["DISPATCH_INTERVAL_SECONDS"])


def is_deployed(cr: ConnectedRegistry) -> bool:
    return cr.activation_status == ConnectedRegistry.Activation.ACTIVE and bool(cr.login_server)


def check(cr: ConnectedRegistry, now: dt.datetime | None = None, probed: health.Probe | None = None,
          fresh: bool = True) -> str:
    """Store one connected registry's state (probing it unless probed is
    given); returns the state. fresh: the probe was made now (it sets the
    last activity when the registry answered)."""
    now = now or timezone.now()
    if probed is None and is_deployed(cr):
        probed = probe(cr)
    behind_after = dt.timedelta(seconds=settings.PORTAL["BEHIND_AFTER_SECONDS"])
    state, details = health.derive_state(facts_of(cr, probed, now), now, behind_after, message_grace())
    record_state(cr, state, details, reached=fresh and bool(probed and probed.reachable))
    return state


def last_probe(cr: ConnectedRegistry) -> health.Probe | None:
    """What the last check found of the registry's reachability, read back
    from its stored details (None when it is not deployed)."""
    if not is_deployed(cr):
        return None
    prefix = health.unreachable_description("")
    for detail in cr.status_details or []:
        if detail.get("code") == health.UNREACHABLE:
            return health.Probe(reachable=False, error=str(detail.get("description", "")).removeprefix(prefix))
    return health.Probe(reachable=True)


def reassess(cr: ConnectedRegistry) -> str:
    """Derive the state again at once after one of its facts changed here (its
    sync token's status, its registry's data endpoint), with what the last
    probe found instead of a new one: the change shows now, by the same rules
    as the periodic check, rather than at the next check."""
    cr = ConnectedRegistry.objects.select_related("registry", "parent").get(pk=cr.pk)
    return check(cr, probed=last_probe(cr), fresh=False)


PROBES_AT_ONCE = 16


def check_all(now: dt.datetime | None = None) -> int:
    """Check every connected registry; returns how many changed state. The
    probes run side by side (a fleet with unreachable sites would otherwise
    take one timeout each, longer than the interval); the database work
    stays in this thread."""
    fleet = list(ConnectedRegistry.objects.select_related("registry", "parent"))
    deployed = [cr for cr in fleet if is_deployed(cr)]
    with ThreadPoolExecutor(max_workers=PROBES_AT_ONCE, thread_name_prefix="probe") as pool:
        probes = dict(zip((cr.pk for cr in deployed), pool.map(probe, deployed)))
    changed = 0
    for cr in fleet:
        before = cr.connection_state
        try:
            changed += check(cr, now, probes.get(cr.pk)) != before
        except Exception:  # one broken row must not stop the others
            log.exception("health check of %s failed", cr.name)
    return changed
