"""Cancelling a sync: a queued run ends at once, a running one stops within
seconds and leaves the child consistent."""
from __future__ import annotations

import io
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from connected import operations, syncs
from connected.models import ConnectedRegistry, SyncRun
from connected.registry_client import RegistryClient
from connected.sync.runner import execute_run
from devtools.faultproxy import FaultProxy
from devtools.images import ImageSpec, populate
from tests.test_sync_failures import assert_child_complete

pytestmark = [pytest.mark.registries, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slow_parent(parent_registry):
    populate(parent_registry.host, [ImageSpec("big/app", f"v{i}", payload_size=2 * 1024 * 1024) for i in range(4)])
    with FaultProxy.start(parent_registry.url) as proxy:
        yield proxy


@pytest.fixture
def cr(slow_parent, child_registry):
    registry = operations.create_registry("myacrregistry", slow_parent.url, data_endpoint_enabled=True)
    return ConnectedRegistry.objects.create(registry=registry, name="factory01", repositories=["big/app"],
                                            login_server=child_registry.url, activation_status="Active")


def test_a_queued_run_is_cancelled_at_once(cr):
    run = SyncRun.objects.create(connected_registry=cr)
    cancelled = syncs.cancel_sync(cr)
    assert cancelled.pk == run.pk and cancelled.status == "cancelled" and cancelled.finished_at
    assert execute_run(run.pk).status == "cancelled"  # a late delivery does nothing


def test_a_running_run_stops_within_seconds_and_leaves_the_child_consistent(cr, slow_parent, parent_registry,
                                                                            child_registry):
    slow_parent.throttle(512 * 1024)  # 8 MiB would take ~16 s
    run = SyncRun.objects.create(connected_registry=cr)
    done = {}

    def work():
        try:
            done["run"] = execute_run(run.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status == "running" and run.bytes_moved > 0:
            break
        time.sleep(0.1)
    assert run.status == "running"
    syncs.cancel_sync(cr)
    worker.join(timeout=60)
    assert not worker.is_alive()
    finished = done["run"]
    # Cancelled, not succeeded: it stopped long before the slow transfer could end.
    assert finished.status == "cancelled", finished.error
    assert finished.bytes_moved < 8 * 1024 * 1024
    cr.refresh_from_db()
    assert cr.sync_lock_owner == "" and cr.connection_state == "Online"
    slow_parent.throttle(None)
    with RegistryClient(parent_registry.url) as parent, RegistryClient(child_registry.url) as child:
        assert_child_complete(child, parent, ["big/app"])  # no half-written tag


def test_cancel_without_a_run_says_so(cr):
    with pytest.raises(ValidationError, match="no sync of 'factory01' is queued or running"):
        syncs.cancel_sync(cr)
    with pytest.raises(CommandError, match="--name: no sync of .factory01. is queued or running"):
        call_command("acr", "connected-registry", "cancel", "--registry", "myacrregistry", "--name", "factory01",
                     stdout=io.StringIO(), stderr=io.StringIO())


def test_cancel_from_the_cli(cr):
    run = SyncRun.objects.create(connected_registry=cr)
    out = io.StringIO()
    call_command("acr", "connected-registry", "cancel", "--registry", "myacrregistry", "--name", "factory01",
                 stdout=out, stderr=io.StringIO())
    assert f"sync run {run.pk} of 'factory01' cancelled before it started" in out.getvalue()


def test_runs_are_listed_with_progress_and_a_run_with_its_ledger(cr):
    import json

    done = SyncRun.objects.create(connected_registry=cr, status="succeeded", tags_planned=2, tags_done=2,
                                  tags_copied=1, tags_skipped=1, bytes_planned=2048, bytes_moved=2048)
    done.tags.create(repository="big/app", tag="v1", digest="sha256:" + "a" * 64, outcome="copied", bytes_moved=2048)
    SyncRun.objects.create(connected_registry=cr, status="running", tags_planned=4, tags_done=1,
                           bytes_planned=4096, bytes_moved=1024)

    def acr(*args):
        out = io.StringIO()
        call_command("acr", "connected-registry", "runs", "--registry", "myacrregistry", "--name", "factory01",
                     *args, stdout=out, stderr=io.StringIO())
        return out.getvalue()

    listed = json.loads(acr())
    assert [r["status"] for r in listed] == ["running", "succeeded"]
    assert listed[0]["progress"] == 0.25 and listed[0]["bytes"] == {"planned": 4096, "moved": 1024}
    table = acr("--output", "table")
    assert table.splitlines()[0].split()[:3] == ["RUN", "TRIGGER", "STATUS"] and "25%" in table
    one = json.loads(acr("--run", str(done.pk)))
    assert one["ledger"] == [{"repository": "big/app", "tag": "v1", "outcome": "copied",
                              "digest": "sha256:" + "a" * 64, "bytes": 2048, "reason": None}]
    with pytest.raises(CommandError, match="--run: run 99999 is not a run of 'factory01'"):
        acr("--run", "99999")


def test_cancel_ends_every_queued_run_at_once(cr):
    first = SyncRun.objects.create(connected_registry=cr, trigger="initial")
    second = SyncRun.objects.create(connected_registry=cr, trigger="manual")
    syncs.cancel_sync(cr)
    assert {r.status for r in SyncRun.objects.filter(pk__in=(first.pk, second.pk))} == {"cancelled"}
