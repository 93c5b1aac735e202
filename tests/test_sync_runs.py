"""A sync run recorded in the database: the runner, the lease, the dispatcher."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from connected import operations
from connected.locks import SyncLease
from connected.models import ConnectedRegistry, SyncRun
from connected.registry_client import RegistryClient
from connected.sync import dispatch
from connected.sync.runner import execute_run
from devtools.images import ImageSpec, populate

pytestmark = [pytest.mark.registries, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def setup(parent_registry, child_registry, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    pushed = populate(parent_registry.host, [
        ImageSpec("hello-world", "1.0"),
        ImageSpec("hello-world", "latest", platforms=("linux/amd64", "linux/arm64")),
        ImageSpec("app/frontend", "1.0", docker_media_types=True),
        ImageSpec("app/other", "1.0"),
    ])
    registry = operations.create_registry("myacrregistry", parent_registry.url, data_endpoint_enabled=True)
    cr = ConnectedRegistry.objects.create(
        registry=registry, name="factory01", repositories=["hello-world", "app/frontend"],
        login_server=child_registry.url, activation_status="Active")
    return cr, pushed


def queued(cr, trigger="manual"):
    return SyncRun.objects.create(connected_registry=cr, trigger=trigger)


def test_a_run_copies_and_records_everything(setup, child_registry):
    cr, pushed = setup
    run = execute_run(queued(cr).pk, worker="test")
    assert run.status == "succeeded", run.error
    assert (run.tags_copied, run.tags_skipped, run.tags_failed, run.tags_planned) == (3, 0, 0, 3)
    assert run.bytes_moved > 1_000_000 and run.started_at <= run.finished_at
    ledger = {(t.repository, t.tag): t for t in run.tags.all()}
    assert set(ledger) == {("hello-world", "1.0"), ("hello-world", "latest"), ("app/frontend", "1.0")}
    digests = {(p.repo, p.tag): p.digest for p in pushed}
    for key, row in ledger.items():
        assert row.outcome == "copied" and row.digest == digests[key]
    cr.refresh_from_db()
    assert cr.connection_state == "Online" and cr.last_sync_at and cr.status_details == []
    assert cr.sync_lock_owner == ""  # the lease is released
    with RegistryClient(child_registry.url) as child:
        assert "app/other" not in child.catalog()

    again = execute_run(queued(cr).pk)
    assert again.status == "succeeded" and again.tags_skipped == 3 and again.bytes_moved == 0


def test_an_unreachable_child_fails_the_run_with_the_reason(setup, child_registry):
    cr, _ = setup
    child_registry.stop()
    run = execute_run(queued(cr).pk)
    assert run.status == "failed"
    assert "connected registry" in run.error and "cannot be reached" in run.error
    cr.refresh_from_db()
    assert cr.connection_state == "Unhealthy"
    assert cr.status_details[0]["code"] == "SyncFailed" and cr.last_sync_at is None


def test_a_disabled_data_endpoint_refuses_the_sync(setup):
    cr, _ = setup
    operations.update_registry(cr.registry, data_endpoint_enabled=False)
    run = execute_run(queued(cr).pk)
    assert run.status == "failed" and "data endpoint" in run.error and "--data-endpoint-enabled" in run.error


def test_a_redelivered_message_does_not_run_twice(setup):
    cr, _ = setup
    run = queued(cr)
    first = execute_run(run.pk)
    second = execute_run(run.pk)
    assert first.status == second.status == "succeeded"
    assert second.finished_at == first.finished_at


def test_a_held_lease_makes_the_run_skip(setup):
    cr, _ = setup
    other = SyncLease(cr.pk, "someone-else", ttl_seconds=60)
    assert other.acquire()
    run = execute_run(queued(cr).pk)
    assert run.status == "skipped"
    other.release()


def test_lease_is_exclusive_until_it_expires(setup):
    cr, _ = setup
    a, b = SyncLease(cr.pk, "a", 60), SyncLease(cr.pk, "b", 60)
    assert a.acquire() and not b.acquire()
    ConnectedRegistry.objects.filter(pk=cr.pk).update(sync_lock_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert b.acquire() and not a.renew()
    b.release()
    assert a.acquire()


def test_concurrent_runs_of_one_connected_registry_never_overlap(setup):
    cr, _ = setup
    runs = [queued(cr) for _ in range(4)]
    results, crashes = {}, []

    def work(run_id):
        try:
            results[run_id] = execute_run(run_id).status
        except Exception as e:  # every run must end with a status, none may crash
            crashes.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(r.pk,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert crashes == [] and len(results) == 4
    statuses = sorted(results.values())
    assert "succeeded" in statuses and set(statuses) <= {"succeeded", "skipped"}
    finished = SyncRun.objects.filter(status="succeeded").order_by("started_at")
    for earlier, later in zip(finished, finished[1:]):
        assert earlier.finished_at <= later.started_at


def test_dispatch_queues_continuous_syncs_once(setup, settings):
    cr, _ = setup
    settings.PORTAL = {**settings.PORTAL, "CONTINUOUS_SYNC_INTERVAL_SECONDS": 30}
    now = timezone.now()
    dispatched = []
    from connected import tasks
    original = tasks.sync_connected_registry.delay
    tasks.sync_connected_registry.delay = lambda run_id: dispatched.append(run_id)
    try:
        assert len(dispatch.dispatch_due(now)) == 1
        assert dispatch.dispatch_due(now) == []  # a run is queued already
        run = SyncRun.objects.get()
        execute_run(run.pk)
        assert dispatch.dispatch_due(now + dt.timedelta(seconds=5)) == []  # not due yet
        [again] = dispatch.dispatch_due(now + dt.timedelta(seconds=31))
        assert again.trigger == "continuous"
    finally:
        tasks.sync_connected_registry.delay = original


def test_scheduled_registry_is_due_only_inside_its_window(setup):
    cr, _ = setup
    cr.sync_schedule, cr.sync_window = "0 12 * * *", "PT4H"
    utc = dt.timezone.utc
    assert dispatch.due_trigger(cr, None, dt.datetime(2026, 12, 3, 11, 59, tzinfo=utc)) is None
    assert dispatch.due_trigger(cr, None, dt.datetime(2026, 12, 3, 12, 0, tzinfo=utc)) == "schedule"
    assert dispatch.due_trigger(cr, None, dt.datetime(2026, 12, 3, 15, 59, tzinfo=utc)) == "schedule"
    assert dispatch.due_trigger(cr, None, dt.datetime(2026, 12, 3, 16, 0, tzinfo=utc)) is None
    done = SyncRun(connected_registry=cr, status="succeeded", queued_at=dt.datetime(2026, 12, 3, 12, 1, tzinfo=utc))
    assert dispatch.due_trigger(cr, done, dt.datetime(2026, 12, 3, 13, 0, tzinfo=utc)) is None
    assert dispatch.due_trigger(cr, done, dt.datetime(2026, 12, 4, 12, 0, tzinfo=utc)) == "schedule"
    assert dispatch.window_deadline(cr, "schedule", dt.datetime(2026, 12, 3, 13, 0, tzinfo=utc)) == \
        dt.datetime(2026, 12, 3, 16, 0, tzinfo=utc)
    assert dispatch.window_deadline(cr, "manual", dt.datetime(2026, 12, 3, 13, 0, tzinfo=utc)) is None


def test_a_run_whose_worker_died_is_marked_failed(setup):
    cr, _ = setup
    run = queued(cr)
    SyncRun.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now() - dt.timedelta(minutes=10))
    # Its lease expired without being released: the worker is gone.
    ConnectedRegistry.objects.filter(pk=cr.pk).update(
        sync_lock_owner=f"run:{run.pk}", sync_lock_expires_at=timezone.now() - dt.timedelta(seconds=1),
        connection_state="Syncing")
    assert dispatch.fail_lost_runs(timezone.now()) == 1
    run.refresh_from_db()
    assert execute_run(run.pk).status == "failed"  # a late redelivery changes nothing
    assert run.status == "failed" and "worker lost" in run.error
    cr.refresh_from_db()
    assert cr.connection_state == "Unhealthy"


def test_a_run_stops_when_its_window_closes_and_the_next_resumes(setup, child_registry):
    cr, pushed = setup
    start = timezone.now()
    ticks = {"n": 0}

    def clock():
        # The window closes after the engine has looked at the clock a few times.
        ticks["n"] += 1
        return start if ticks["n"] < 12 else start + dt.timedelta(hours=5)

    closed = execute_run(queued(cr, "schedule").pk, deadline=start + dt.timedelta(hours=4), clock=clock)
    assert closed.status == "window_closed" and "window closed" in closed.error
    cr.refresh_from_db()
    assert cr.connection_state == "Online" and cr.last_sync_at is None
    copied_first = closed.tags_copied
    assert copied_first < 3

    resumed = execute_run(queued(cr, "schedule").pk, deadline=timezone.now() + dt.timedelta(hours=1))
    assert resumed.status == "succeeded"
    assert resumed.tags_copied + resumed.tags_skipped == 3 and resumed.tags_skipped >= copied_first
    with RegistryClient(child_registry.url) as child:
        for image in pushed:
            if image.repo in cr.repositories:
                assert child.head_manifest(image.repo, image.tag) == image.digest


def test_a_run_queued_after_its_window_closed_does_nothing(setup, child_registry):
    cr, _ = setup
    run = execute_run(queued(cr, "schedule").pk, deadline=timezone.now() - dt.timedelta(seconds=1))
    assert run.status == "window_closed" and run.tags_copied == 0 and run.bytes_moved == 0
    with RegistryClient(child_registry.url) as child:
        assert child.catalog() == []


def test_routine_runs_of_a_read_only_child_cost_one_manifest_request_per_unchanged_tag(setup):
    cr, _ = setup
    assert execute_run(queued(cr).pk).status == "succeeded"
    requests = []
    from connected.registry_client import client as client_module
    original = client_module.RegistryClient._request

    def counting(self, method, path_or_url, *args, **kwargs):
        requests.append((self.base_url, method, str(path_or_url)))
        return original(self, method, path_or_url, *args, **kwargs)

    client_module.RegistryClient._request = counting
    try:
        run = execute_run(queued(cr, "continuous").pk)
    finally:
        client_module.RegistryClient._request = original
    assert run.status == "succeeded" and run.tags_skipped == 3
    manifest_requests = [r for r in requests if "/manifests/" in r[2]]
    assert len(manifest_requests) == 3  # one HEAD at the parent per tag, none at the child
    assert all(r[0] == cr.registry.login_server for r in manifest_requests)


def test_old_runs_are_pruned_keeping_the_last_ones(setup):
    cr, _ = setup
    now = timezone.now()
    for age_days in (1, 40, 41, 42, 43):
        SyncRun.objects.create(connected_registry=cr, status="succeeded", queued_at=now - dt.timedelta(days=age_days))
    SyncRun.objects.create(connected_registry=cr, status="running", queued_at=now - dt.timedelta(days=50))
    assert dispatch.prune_runs(now, dt.timedelta(days=30), keep_last=3) == 2
    ages = sorted((now - r.queued_at).days for r in SyncRun.objects.all())
    assert ages == [1, 40, 41, 50]  # the 3 most recent, and the unfinished one


def test_a_read_write_run_sends_local_pushes_up(setup, parent_registry, child_registry):
    cr, _ = setup
    ConnectedRegistry.objects.filter(pk=cr.pk).update(mode="ReadWrite")
    cr.refresh_from_db()
    assert execute_run(queued(cr).pk).status == "succeeded"
    [local] = populate(child_registry.host, [ImageSpec("hello-world", "edge", seed="edge")])
    run = execute_run(queued(cr, "continuous").pk)
    assert run.status == "succeeded", run.error
    assert run.tags.get(tag="edge").outcome == "pushed"
    with RegistryClient(parent_registry.url) as parent:
        assert parent.head_manifest("hello-world", "edge") == local.digest
    again = execute_run(queued(cr, "continuous").pk)
    assert again.tags_copied == 0 and again.bytes_moved == 0  # no ping-pong
