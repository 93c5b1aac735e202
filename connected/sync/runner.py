"""Run one sync of one connected registry and record it in the database.

The engine does the copying; this module takes the per-registry lease,
reports progress into the run row while the engine works, and derives the
run's status and the connected registry's state from the result.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

from django.conf import settings
from django.db import connection
from django.utils import timezone

from connected.locks import SyncLease
from connected.models import ConnectedRegistry, SyncRun, SyncRunTag
from connected import health
from connected.registry_client import AuthError, RegistryClient, RegistryError, Unreachable

from .credentials import explain_refusal, sync_credentials
from connected.events import notify_after_run

from . import inbox
from .engine import RepositorySync, SyncObserver, SyncResult, TagResult
from .twoway import TwoWaySync

log = logging.getLogger(__name__)

STOP_CANCELLED = "cancelled"
STOP_WINDOW_CLOSED = "window closed"
STOP_LEASE_LOST = "lease lost"


def lease_owner(run: SyncRun) -> str:
    return f"run:{run.pk}"


class RunProgress(SyncObserver):
    """Counters kept in memory by the engine's threads; the heartbeat writes
    them to the run row, so the pages and the CLI can read progress."""

    def __init__(self, deadline: dt.datetime | None = None, clock=timezone.now,
                 lease_valid_until: dt.datetime | None = None):
        self._lock = threading.Lock()
        self.deadline, self.clock = deadline, clock
        # Past this instant another worker may hold the lease: stop writing.
        self.lease_valid_until = lease_valid_until
        self.tags_planned = self.tags_done = self.tags_copied = self.tags_skipped = self.tags_failed = 0
        self.tags_deleted = 0
        self.bytes_moved = self.bytes_planned = 0
        self._stop: str | None = None

    def planned(self, tags: int, nbytes: int) -> None:
        with self._lock:
            self.tags_planned, self.bytes_planned = tags, nbytes

    def tag_finished(self, result: TagResult) -> None:
        with self._lock:
            self.tags_done += 1
            if result.outcome in ("copied", "pushed", "conflict"):
                self.tags_copied += 1
            elif result.outcome in ("in_sync", "kept"):
                self.tags_skipped += 1
            elif result.outcome == "deleted":
                self.tags_deleted += 1
            else:
                self.tags_failed += 1

    def moved(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_moved += nbytes

    def stop_reason(self) -> str | None:
        # At the window's end no new blob or manifest starts.
        if self._stop is None and self.deadline is not None and self.clock() >= self.deadline:
            self._stop = STOP_WINDOW_CLOSED
        if self._stop is None and self.lease_valid_until is not None and timezone.now() >= self.lease_valid_until:
            self._stop = STOP_LEASE_LOST
        return self._stop

    def request_stop(self, reason: str) -> None:
        self._stop = self._stop or reason

    def snapshot(self) -> dict:
        with self._lock:
            return {"tags_planned": self.tags_planned, "tags_done": self.tags_done,
                    "tags_copied": self.tags_copied, "tags_skipped": self.tags_skipped,
                    "tags_failed": self.tags_failed, "tags_deleted": self.tags_deleted,
                    "bytes_moved": self.bytes_moved, "bytes_planned": self.bytes_planned}


class Heartbeat(threading.Thread):
    """Renews the lease, writes progress, and asks the engine to stop when the
    run is cancelled or the lease is lost."""

    def __init__(self, run: SyncRun, lease: SyncLease, progress: RunProgress, interval: float):
        super().__init__(name=f"heartbeat-run-{run.pk}", daemon=True)
        self.run_id = run.pk
        self.lease = lease
        self.progress = progress
        self.interval = interval
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.wait(self.interval):
                self.beat()
        finally:
            connection.close()  # this thread's own database connection

    def beat(self) -> None:
        try:
            renewed_at = timezone.now()
            if self.lease.renew():
                self.progress.lease_valid_until = renewed_at + self.lease.ttl
            else:
                self.progress.request_stop(STOP_LEASE_LOST)
            SyncRun.objects.filter(pk=self.run_id).update(**self.progress.snapshot())
            if SyncRun.objects.filter(pk=self.run_id, cancel_requested=True).exists():
                self.progress.request_stop(STOP_CANCELLED)
        except Exception:  # a database hiccup must not kill the heartbeat
            log.exception("heartbeat of run %s failed", self.run_id)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)


def execute_run(run_id: int, worker: str = "", deadline: dt.datetime | None = None,
                clock=timezone.now) -> SyncRun:
    """Carry out a queued run: sync its connected registry now, unless another
    run holds the lease (the run is then recorded as skipped). A scheduled
    run stops at `deadline`, the end of its window, by `clock`. Returns the
    finished run. Safe to call twice for one run (broker redelivery)."""
    # Claim the run with one conditional UPDATE: of two deliveries of one
    # message (broker redelivery), exactly one carries it out.
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.QUEUED).update(
        status=SyncRun.Status.RUNNING, started_at=timezone.now(), worker=worker[:200])
    run = SyncRun.objects.select_related("connected_registry__registry", "connected_registry__parent").get(pk=run_id)
    if not claimed:
        return run  # already handled or being handled
    cr = run.connected_registry
    blockers = cr.sync_blockers()
    if blockers:
        return _finish(run, SyncRun.Status.FAILED, SyncRun.REFUSED_PREFIX + " ".join(blockers))

    portal = settings.PORTAL
    lease = SyncLease(cr.pk, lease_owner(run), portal["SYNC_LOCK_TTL_SECONDS"])
    if not lease.acquire():
        return _finish(run, SyncRun.Status.SKIPPED, "another sync of this connected registry was running")
    progress = RunProgress(deadline, clock, lease_valid_until=timezone.now() + lease.ttl)
    heartbeat = Heartbeat(run, lease, progress, interval=min(2.0, portal["SYNC_LOCK_TTL_SECONDS"] / 4))
    messages, result, follow_up = [], None, set()
    try:
        only_tags = None
        if run.scope == SyncRun.Scope.MESSAGES:
            messages = inbox.take(cr, run)
            repositories, only_tags = inbox.scope(cr, messages)
            if not repositories:
                inbox.settle(cr, run, SyncResult(), messages)
                return _finish(run, SyncRun.Status.SUCCEEDED)
        _set_state(cr, ConnectedRegistry.ConnectionState.SYNCING)
        heartbeat.start()
        try:
            result = _copy(cr, run, progress, repositories if only_tags is not None else None, only_tags)
        finally:
            heartbeat.stop()
        run = _record(run, cr, result, progress)
        inbox.settle(cr, run, result, messages)
        # The changes this run made, passed on; and messages that came in meanwhile.
        follow_up = notify_after_run(cr, result.tags)
        if cr.messages.pending().exists():
            follow_up.add(cr.pk)
        return run
    except AuthError as e:
        _set_state(cr, ConnectedRegistry.ConnectionState.UNHEALTHY, health.AUTHENTICATION_FAILED, str(e))
        return _finish(run, SyncRun.Status.FAILED, SyncRun.CREDENTIALS_REFUSED_PREFIX + str(e), progress.snapshot())
    except RegistryError as e:
        _set_state(cr, ConnectedRegistry.ConnectionState.UNHEALTHY, "SyncFailed", str(e),
                   reached=not isinstance(e, Unreachable))
        return _finish(run, SyncRun.Status.FAILED, str(e), progress.snapshot())
    except Exception as e:
        log.exception("sync run %s failed", run.pk)
        _set_state(cr, ConnectedRegistry.ConnectionState.UNHEALTHY, "SyncFailed", f"internal error: {e}")
        return _finish(run, SyncRun.Status.FAILED, f"internal error: {type(e).__name__}: {e}", progress.snapshot())
    finally:
        if result is None and messages:
            inbox.settle(cr, run, None, messages)  # released for the next run
        lease.release()
        if follow_up:
            _dispatch_follow_up(follow_up)


def _dispatch_follow_up(pks: set[int]) -> None:
    from .dispatch import dispatch_now

    try:
        dispatch_now(pks)
    except Exception:  # beat's dispatcher catches up
        log.exception("dispatching follow-up syncs failed")


def _client(url: str, cr: ConnectedRegistry) -> RegistryClient:
    # Both sides are asked as the sync token (answered only to a challenge).
    username, password = sync_credentials(cr)
    return RegistryClient(url, username, password, timeout=settings.PORTAL["REGISTRY_TIMEOUT_SECONDS"],
                          max_connections=2 * settings.PORTAL["SYNC_PARALLEL_BLOBS"] + 4)


def _copy(cr: ConnectedRegistry, run: SyncRun, progress: RunProgress, repositories: list[str] | None = None,
          only_tags: dict[str, set[str]] | None = None) -> SyncResult:
    """Sync cr's repositories (or those given, limited to only_tags)."""
    repositories = list(cr.repositories) if repositories is None else repositories
    with _client(cr.parent_login_server(), cr) as source, _client(cr.login_server, cr) as dest:
        for who, client in (("the parent", source), ("the connected registry", dest)):
            try:
                client.ping()
            except AuthError as e:
                raise AuthError(f"{who} at {client.base_url} refused the sync: {explain_refusal(cr)}") from e
            except Unreachable as e:
                raise Unreachable(f"{who} at {client.base_url} cannot be reached: {e}") from e
            except RegistryError as e:
                raise RegistryError(f"{who} at {client.base_url} answered the sync with an error: {e}") from e
        read_only = cr.mode == ConnectedRegistry.Mode.READ_ONLY
        if not read_only:
            # Pushes at the child go up, the parent's changes come down.
            return TwoWaySync(source, dest, agreed_digests(cr), parallelism=settings.PORTAL["SYNC_PARALLEL_BLOBS"],
                              observer=progress, conflict_suffix=cr.name).sync(repositories, only_tags)
        return RepositorySync(
            source, dest, parallelism=settings.PORTAL["SYNC_PARALLEL_BLOBS"],
            observer=progress,
            # A ReadOnly child mirrors: whatever the parent lacks goes.
            # Repositories dropped from the list are purged by full comparisons.
            delete_policy="mirror", purge_unlisted=run.scope == SyncRun.Scope.FULL,
            # Routine runs of a ReadOnly child (nobody pushes to it) trust
            # what the last run left there; initial and manual runs compare
            # both sides in full.
            known_child_digests=last_known_digests(cr) if run.trigger in ROUTINE_TRIGGERS else None,
        ).sync(repositories, only_tags)


ROUTINE_TRIGGERS = (SyncRun.Trigger.CONTINUOUS, SyncRun.Trigger.SCHEDULE, SyncRun.Trigger.MESSAGE)


def last_known_digests(cr: ConnectedRegistry) -> dict[tuple[str, str], str]:
    """(repository, tag) -> digest, as the last full comparison that got
    through left them on the child, updated by the runs since (messages runs
    touch a few tags each)."""
    through = (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL)
    last_full = cr.runs.filter(status__in=through, scope=SyncRun.Scope.FULL).order_by("-queued_at", "-pk").first()
    if last_full is None:
        return {}
    rows = SyncRunTag.objects.filter(run__connected_registry=cr, run__status__in=through,
                                     run__queued_at__gte=last_full.queued_at) \
        .order_by("run__queued_at", "run_id").values_list("repository", "tag", "digest", "outcome")
    known: dict[tuple[str, str], str] = {}
    for repo, tag, digest, outcome in rows:
        if outcome in SyncRunTag.AGREED and digest:
            known[(repo, tag)] = digest
        else:
            known.pop((repo, tag), None)  # deleted, or failed: ask the child
    return known


def agreed_digests(cr: ConnectedRegistry) -> dict[tuple[str, str], str]:
    """(repository, tag) -> the digest both sides last agreed on, from the
    ledgers (latest first wins; a tag deleted since has none)."""
    agreed: dict[tuple[str, str], str] = {}
    rows = SyncRunTag.objects.filter(run__connected_registry=cr).exclude(outcome=SyncRunTag.Outcome.FAILED) \
        .order_by("run__queued_at", "run_id").values_list("repository", "tag", "digest", "outcome")
    for repo, tag, digest, outcome in rows:
        if outcome == SyncRunTag.Outcome.DELETED:
            agreed.pop((repo, tag), None)
        elif digest:
            agreed[(repo, tag)] = digest
    return agreed


def _record(run: SyncRun, cr: ConnectedRegistry, result: SyncResult, progress: RunProgress) -> SyncRun:
    SyncRunTag.objects.bulk_create([
        SyncRunTag(run=run, repository=t.repository, tag=t.tag, digest=t.digest, outcome=t.outcome,
                   bytes_moved=t.bytes_moved, reason=t.reason[:2000])
        for t in result.tags
    ])
    failed = [t for t in result.tags if t.outcome == "failed"]
    problems = result.errors + [f"{t.repository}:{t.tag}: {t.reason}" for t in failed]
    state = ConnectedRegistry.ConnectionState
    if result.stopped == STOP_CANCELLED:
        status, error = SyncRun.Status.CANCELLED, "cancelled"
    elif result.stopped == STOP_WINDOW_CLOSED:
        status, error = SyncRun.Status.WINDOW_CLOSED, "the sync window closed; the next window resumes"
    elif result.stopped:
        status, error = SyncRun.Status.FAILED, "the sync lease was lost (another worker took over)"
    elif not problems:
        status, error = SyncRun.Status.SUCCEEDED, ""
    elif len(failed) < len(result.tags):
        status, error = SyncRun.Status.PARTIAL, "; ".join(problems[:5])
    else:
        status, error = SyncRun.Status.FAILED, "; ".join(problems[:5])
    if len(problems) > 5:
        error += f" (and {len(problems) - 5} more)"

    now = timezone.now()
    if status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL):
        ConnectedRegistry.objects.filter(pk=cr.pk).update(last_sync_at=now)
    if status == SyncRun.Status.SUCCEEDED or result.stopped in (STOP_CANCELLED, STOP_WINDOW_CLOSED):
        _set_state(cr, state.ONLINE)
    else:
        _set_state(cr, state.UNHEALTHY, "SyncFailed", error)
    return _finish(run, status, error, progress.snapshot())


# The details a run's outcome replaces: its own failure, the health check's
# account of the last run, a lost worker.
RUN_OUTCOME_CODES = ("SyncFailed", "LastSyncFailed", "WorkerLost", health.AUTHENTICATION_FAILED)


def _set_state(cr: ConnectedRegistry, state: str, code: str = "", description: str = "",
               reached: bool = True) -> None:
    """Set the connection state after a run; an unhealthy state carries its
    reason. reached: the run heard from the registries (last activity)."""
    from connected.health_check import record_state

    now = timezone.now()
    current = ConnectedRegistry.objects.filter(pk=cr.pk).values_list("status_details", flat=True).first() or []
    # A run speaks for its own outcome only: other details (a disabled sync
    # token, changes still waiting) stay until the health check finds what
    # they describe changed; dropping them here would make the state flap.
    details = [d for d in current if d.get("code") not in RUN_OUTCOME_CODES]
    if code:
        kind = "Authentication" if code == health.AUTHENTICATION_FAILED else "Sync"
        details.append({"type": kind, "code": code, "description": description[:1000],
                        "timestamp": now.isoformat().replace("+00:00", "Z")})
    if state == ConnectedRegistry.ConnectionState.ONLINE and details:
        state = ConnectedRegistry.ConnectionState.UNHEALTHY
    record_state(cr, state, details, reached=reached)


def _finish(run: SyncRun, status: str, error: str = "", counters: dict | None = None) -> SyncRun:
    now = timezone.now()
    fields = {"status": status, "finished_at": now, "error": error[:4000], **(counters or {})}
    # Only a run still running is finished here: one the dispatcher already
    # declared lost keeps that verdict.
    SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(**fields)
    run.refresh_from_db()
    return run
