"""Crashes and redelivery in real processes: a Celery worker killed with
SIGKILL mid-sync, a message delivered twice, a run that outlives its lease
TTL. The parent sits behind a throttled devtools.faultproxy so a sync lasts
as long as the test needs; the lease TTL is 4 s (PORTAL_SYNC_LOCK_TTL)."""
from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import time

import pytest

from connected.registry_client import RegistryClient
from devtools.faultproxy import FaultProxy
from devtools.images import MiB, ImageSpec, populate
from tests.test_sync_failures import assert_child_complete
from tests.waiting import wait_for

REPO = "crash/app"
REGISTRY, NAME = "myacrregistry", "crashtest"
TTL = 4


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def lease(portal) -> tuple[str, dt.datetime | None]:
    """(owner, expiry in naive UTC) of the connected registry's sync lease."""
    with sqlite3.connect(portal.data_dir / "portal.sqlite3") as db:
        owner, expires = db.execute("SELECT sync_lock_owner, sync_lock_expires_at FROM connected_connectedregistry "
                                    "WHERE name = ?", (NAME,)).fetchone()
    return owner, dt.datetime.fromisoformat(expires).replace(tzinfo=None) if expires else None


def connection_state(portal) -> str:
    with sqlite3.connect(portal.data_dir / "portal.sqlite3") as db:
        return db.execute("SELECT connection_state FROM connected_connectedregistry WHERE name = ?",
                          (NAME,)).fetchone()[0]


def worker_log(portal, name: str) -> str:
    path = portal.data_dir.parent / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def slow_parent(parent_registry):
    """Four 3 MiB images on the parent, reached through a proxy at 192 KiB/s
    (over a minute for a full sync) until the test lifts the throttle."""
    pushed = populate(parent_registry.host, [ImageSpec(REPO, f"v{i}", payload_size=3 * MiB) for i in range(4)])
    with FaultProxy(parent_registry.port) as proxy:
        proxy.throttle(192 * 1024)
        yield proxy, pushed


def set_up_portal(portal, proxy, child_registry):
    """Lease TTL 4 s; the registry and its connected registry (whose creation
    queues the initial sync)."""
    portal.environ["PORTAL_SYNC_LOCK_TTL"] = str(TTL)
    portal.manage("acr", "create", "--name", REGISTRY, "--login-server", proxy.url, "--data-endpoint-enabled")
    portal.manage("acr", "connected-registry", "create", "--registry", REGISTRY, "--name", NAME,
                  "--repository", REPO, "--login-server", child_registry.url)


def running_run(portal):
    runs = [r for r in portal.runs() if r["status"] == "running"]
    return runs[0] if runs else None


def assert_child_matches_parent(parent_registry, child_registry, pushed):
    with RegistryClient(parent_registry.url) as parent, RegistryClient(child_registry.url) as child:
        assert assert_child_complete(child, parent, [REPO]) == {(REPO, p.tag) for p in pushed}
        for image in pushed:
            assert child.head_manifest(REPO, image.tag) == image.digest


@pytest.mark.registries
@pytest.mark.redis
def test_a_worker_killed_mid_sync_is_detected_and_the_next_sync_completes(portal, slow_parent, parent_registry,
                                                                          child_registry):
    proxy, pushed = slow_parent
    set_up_portal(portal, proxy, child_registry)
    worker = portal.start("worker", "-l", "info", "--concurrency", "1", "-n", "w1@%h", name="worker1")
    run = wait_for(lambda: running_run(portal), 90, "the initial run to start")
    # Blob bytes are crossing the slow link: the worker is mid-transfer.
    wait_for(lambda: any(e.body_bytes > 100_000 for e in proxy.requests("GET", r"/blobs/sha256:")), 60,
             "a blob to be half-way across")
    owner, _ = lease(portal)
    assert owner == f"run:{run['id']}"

    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool processes, without warning
    worker.wait(timeout=30)
    wait_for(lambda: not group_alive(worker.pid), 30, "the worker's pool processes to die")
    owner, frozen = lease(portal)
    assert owner == f"run:{run['id']}" and frozen is not None

    # (a) Nobody renews the lease any more: it expires.
    wait_for(lambda: utcnow() > frozen, 60, "the lease to expire")
    assert lease(portal) == (owner, frozen)
    assert running_run(portal)["id"] == run["id"]  # still recorded as running: nobody noticed yet

    # (b) What beat runs marks it failed: the worker was lost.
    done = portal.manage("shell", "-c", "from django.utils import timezone; "
                         "from connected.sync.dispatch import fail_lost_runs; print(fail_lost_runs(timezone.now()))")
    assert done.stdout.split()[-1] == "1", done.stdout  # (the last line: Django 5.2 may announce its imports)
    [lost] = [r for r in portal.runs() if r["id"] == run["id"]]
    assert lost["status"] == "failed" and "worker lost" in lost["error"], lost
    assert connection_state(portal) == "Unhealthy"

    # (c) A new worker, a full-speed link: the next sync completes correctly.
    proxy.throttle(None)
    portal.start("worker", "-l", "info", "--concurrency", "1", "-n", "w2@%h", name="worker2")
    resync = portal.manage("acr", "connected-registry", "resync", "--registry", REGISTRY, "--name", NAME,
                           "--wait", "--timeout", "150", check=False)
    assert resync.returncode == 0, resync.stdout + resync.stderr
    runs = portal.runs()
    assert [r["status"] for r in runs] == ["failed", "succeeded"], runs
    assert_child_matches_parent(parent_registry, child_registry, pushed)
    assert connection_state(portal) == "Online"
    assert lease(portal) == ("", None)


@pytest.mark.registries
@pytest.mark.redis
def test_redelivery_and_a_run_longer_than_its_lease_never_sync_twice_at_once(portal, slow_parent, parent_registry,
                                                                             child_registry):
    proxy, pushed = slow_parent
    set_up_portal(portal, proxy, child_registry)
    portal.start("worker", "-l", "info", "--concurrency", "2", "-n", "w1@%h", name="worker1")
    run = wait_for(lambda: running_run(portal), 90, "the initial run to start")
    owner = f"run:{run['id']}"

    # The broker delivers the same message again while the run goes on: the
    # second delivery finds the run running and leaves it alone.
    portal.manage("shell", "-c", f"from connected.tasks import sync_connected_registry as t; t.delay({run['id']})")
    noop = re.compile(r"sync_connected_registry\[[^\]]+\] succeeded in [0-9.]+s: 'running'")
    wait_for(lambda: noop.search(worker_log(portal, "worker1")), 60, "the redelivered message to be handled")

    # Another sync asked for meanwhile is skipped: the lease is held.
    portal.manage("acr", "connected-registry", "resync", "--registry", REGISTRY, "--name", NAME)
    skipped = wait_for(lambda: [r for r in portal.runs() if r["status"] == "skipped"], 60, "the resync to be skipped")
    assert "another sync" in skipped[0]["error"]

    # The run outlives several TTLs: its heartbeat keeps renewing the lease.
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < 3 * TTL:
        samples.append(lease(portal))
        time.sleep(0.5)
    assert {o for o, _ in samples} == {owner}
    assert samples[-1][1] > samples[0][1] + dt.timedelta(seconds=TTL), samples
    assert running_run(portal)["id"] == run["id"]

    proxy.throttle(None)
    wait_for(lambda: [r for r in portal.runs() if r["id"] == run["id"] and r["finished_at"]], 120,
             "the long run to finish")
    runs = {r["id"]: r for r in portal.runs()}
    assert runs[run["id"]]["status"] == "succeeded", runs
    assert sorted(r["status"] for r in runs.values()) == ["skipped", "succeeded"]
    assert_child_matches_parent(parent_registry, child_registry, pushed)


@pytest.mark.registries
@pytest.mark.django_db
def test_execute_run_leaves_a_run_that_is_already_running_alone(parent_registry, child_registry):
    """A redelivered message for a run another worker is carrying out."""
    from django.utils import timezone

    from connected import operations
    from connected.models import ConnectedRegistry, SyncRun
    from connected.sync.runner import execute_run

    registry = operations.create_registry(REGISTRY, parent_registry.url, data_endpoint_enabled=True)
    cr = ConnectedRegistry.objects.create(registry=registry, name=NAME, repositories=[REPO],
                                          login_server=child_registry.url, activation_status="Active")
    populate(parent_registry.host, [ImageSpec(REPO, "v1")])
    started = timezone.now() - dt.timedelta(seconds=30)
    run = SyncRun.objects.create(connected_registry=cr, status="running", started_at=started, worker="w1@host")
    expires = timezone.now() + dt.timedelta(seconds=60)
    ConnectedRegistry.objects.filter(pk=cr.pk).update(sync_lock_owner=f"run:{run.pk}", sync_lock_expires_at=expires,
                                                      connection_state="Syncing")

    again = execute_run(run.pk, worker="w2@host")

    assert (again.status, again.started_at, again.worker, again.finished_at) == ("running", started, "w1@host", None)
    cr.refresh_from_db()
    assert (cr.sync_lock_owner, cr.sync_lock_expires_at) == (f"run:{run.pk}", expires)
    assert again.tags.count() == 0
    with RegistryClient(child_registry.url) as child:
        assert child.catalog() == []


@pytest.mark.registries
@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_queued_run_at_once_do_not_mark_it_skipped(parent_registry, child_registry,
                                                                           monkeypatch):
    import threading

    from django.db import connection

    from connected import operations
    from connected.models import ConnectedRegistry, SyncRun
    from connected.sync import runner

    populate(parent_registry.host, [ImageSpec(REPO, "v1")])
    registry = operations.create_registry(REGISTRY, parent_registry.url, data_endpoint_enabled=True)
    cr = ConnectedRegistry.objects.create(registry=registry, name=NAME, repositories=[REPO],
                                          login_server=child_registry.url, activation_status="Active")
    run = SyncRun.objects.create(connected_registry=cr)
    both_read_it_queued = threading.Barrier(2)

    class RacingLease(runner.SyncLease):
        def acquire(self):
            # Both deliveries have read the run; now they race (a fixed runner
            # may never get the second one here: then wait a moment and go on).
            try:
                both_read_it_queued.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
            return super().acquire()

    monkeypatch.setattr(runner, "SyncLease", RacingLease)
    statuses = {}

    def deliver(worker):
        try:
            statuses[worker] = runner.execute_run(run.pk, worker=worker).status
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(w,)) for w in ("w1@host", "w2@host")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    run.refresh_from_db()
    assert run.status == "succeeded"
    # The duplicate must leave the run to the delivery carrying it out, not
    # declare it finished ("skipped") while it is running.
    assert "skipped" not in statuses.values(), statuses
