"""The whole path in real processes: Celery workers and beat on a real Redis,
the `acr` CLI, two real registries. Nobody calls the engine by hand here."""
from __future__ import annotations

import time

import pytest

from connected.registry_client import RegistryClient
from devtools.images import ImageSpec, populate
from tests.waiting import digest_at, wait_for

pytestmark = [pytest.mark.registries, pytest.mark.redis]


def test_beat_keeps_a_continuous_registry_in_sync(portal, parent_registry, child_registry):
    [first] = populate(parent_registry.host, [ImageSpec("hello-world", "1.0")])
    portal.start("worker", "-l", "info", "--concurrency", "2", "-n", "w1@%h", name="worker")
    portal.start("beat", "-l", "info", "-s", str(portal.data_dir / "beat-schedule"), name="beat")
    portal.manage("acr", "create", "--name", "myacrregistry", "--login-server", parent_registry.url,
                  "--data-endpoint-enabled")
    portal.manage("acr", "connected-registry", "create", "--registry", "myacrregistry", "--name",
                  "myconnectedregistry", "--repository", "hello-world", "--login-server", child_registry.url)
    wait_for(lambda: digest_at(child_registry, "hello-world", "1.0") == first.digest, 60, "the initial sync")

    # A tag pushed to the parent reaches the child with nobody acting.
    [pushed] = populate(parent_registry.host, [ImageSpec("hello-world", "2.0", seed="new")])
    started = time.monotonic()
    wait_for(lambda: digest_at(child_registry, "hello-world", "2.0") == pushed.digest, 60, "beat's sync")
    assert time.monotonic() - started < 60
    triggers = {r["trigger"] for r in portal.runs()}
    assert {"initial", "continuous"} <= triggers

    shown = portal.manage("acr", "connected-registry", "show", "--registry", "myacrregistry", "--name",
                          "myconnectedregistry", "--query", "connectionState").stdout
    assert "Online" in shown or "Syncing" in shown


def test_two_workers_never_sync_one_registry_at_once(portal, parent_registry, child_registry):
    populate(parent_registry.host, [ImageSpec("big/app", f"v{i}", payload_size=3 * 1024 * 1024)
                                    for i in range(6)])
    portal.manage("acr", "create", "--name", "myacrregistry", "--login-server", parent_registry.url,
                  "--data-endpoint-enabled")
    portal.manage("acr", "connected-registry", "create", "--registry", "myacrregistry", "--name",
                  "myconnectedregistry", "--repository", "big/app", "--login-server", child_registry.url)
    for _ in range(5):
        portal.manage("acr", "connected-registry", "resync", "--registry", "myacrregistry",
                      "--name", "myconnectedregistry")
    # Two worker processes with two slots each take the six runs at once.
    portal.start("worker", "-l", "info", "--concurrency", "2", "-n", "w1@%h", name="worker1")
    portal.start("worker", "-l", "info", "--concurrency", "2", "-n", "w2@%h", name="worker2")
    runs = wait_for(lambda: (lambda rs: rs if len(rs) == 6 and all(r["finished_at"] for r in rs) else None)(
        portal.runs()), 120, "all six runs to finish")
    statuses = [r["status"] for r in runs]
    assert set(statuses) <= {"succeeded", "skipped"}, runs
    assert "skipped" in statuses and "succeeded" in statuses
    ran = sorted((r for r in runs if r["status"] == "succeeded"), key=lambda r: r["started_at"])
    for earlier, later in zip(ran, ran[1:]):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)
    with RegistryClient(child_registry.url) as client:
        assert sorted(client.list_tags("big/app")) == [f"v{i}" for i in range(6)]
