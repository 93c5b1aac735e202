"""Changes flow as sync messages, in real processes: distribution registries
send their webhook events to the portal's web server (gunicorn), a Celery
worker applies the messages. No beat runs here and the full comparison
interval is an hour, so only the events can have moved anything."""
from __future__ import annotations

import time

import pytest

from connected.tokenservice.registry_config import notifications_block
from devtools.images import ImageSpec, populate
from devtools.processes import start_registry
from tests.waiting import digest_at, wait_for

pytestmark = [pytest.mark.registries, pytest.mark.redis]

R = "myacrregistry"


def all_finished(portal, count):
    runs = portal.runs()
    return runs if len(runs) >= count and all(r["finished_at"] for r in runs) else None


@pytest.fixture
def wired(portal, registry_factory):
    """The portal's web server and a worker (no beat); registries, and a way
    to restart one with its events going to the portal."""
    portal.environ.update(PORTAL_FULL_COMPARISON_INTERVAL="3600", PORTAL_CONTINUOUS_INTERVAL="3600")
    url = portal.serve()
    restarted = []

    class Wired:
        portal_url = url

        @staticmethod
        def registry(name):
            return registry_factory(name)

        @staticmethod
        def send_events(registry, secret):
            """Restart registry (same storage, same port) sending its events to the portal."""
            registry.stop()
            again = start_registry(registry.root, registry.port, notifications=notifications_block(secret, url))
            restarted.append(again)
            return again

        @staticmethod
        def worker():
            portal.start("worker", "-l", "info", "--concurrency", "2", "-n", "w1@%h", name="worker")

    yield Wired()
    for registry in restarted:
        registry.stop()


def test_a_push_at_the_parent_is_on_the_child_within_10_seconds(portal, wired):
    parent, child = wired.registry("parent"), wired.registry("child")
    portal.manage("acr", "create", "--name", R, "--login-server", parent.url, "--data-endpoint-enabled")
    parent = wired.send_events(parent, portal.events_secret(R))
    [first] = populate(parent.host, [ImageSpec("hello-world", "1.0")])
    portal.manage("acr", "connected-registry", "create", "--registry", R, "--name", "myconnectedregistry",
                  "--repository", "hello-world", "--login-server", child.url)
    wired.worker()
    wait_for(lambda: digest_at(child, "hello-world", "1.0") == first.digest, 60, "the initial sync")
    wait_for(lambda: all_finished(portal, 1), 30, "the initial run to finish")

    [pushed] = populate(parent.host, [ImageSpec("hello-world", "2.0", seed="new")])
    pushed_at = time.monotonic()
    wait_for(lambda: digest_at(child, "hello-world", "2.0") == pushed.digest, 10, "the pushed tag on the child")
    took = time.monotonic() - pushed_at
    runs = portal.runs()
    assert runs[0]["trigger"] == "initial"
    assert any(r["trigger"] == "message" and r["scope"] == "messages" for r in runs[1:]), runs
    assert took < 10
    shown = portal.manage("acr", "connected-registry", "show", "--registry", R, "--name",
                          "myconnectedregistry", "--query", "connectionState").stdout
    assert "Online" in shown or "Syncing" in shown


def test_three_levels_a_push_at_the_top_reaches_the_grandchild(portal, wired):
    top, middle, bottom = wired.registry("top"), wired.registry("middle"), wired.registry("bottom")
    portal.manage("acr", "create", "--name", R, "--login-server", top.url, "--data-endpoint-enabled")
    # The middle and the bottom send no events: the middle's syncs pass changes on.
    top = wired.send_events(top, portal.events_secret(R))
    populate(top.host, [ImageSpec("acr/connected-registry", "1.0"), ImageSpec("hello-world", "1.0")])
    repos = ["--repository", "hello-world", "acr/connected-registry"]
    portal.manage("acr", "connected-registry", "create", "--registry", R, "--name", "factory", *repos,
                  "--login-server", middle.url)
    portal.manage("acr", "connected-registry", "create", "--registry", R, "--name", "floor", "--parent", "factory",
                  *repos, "--login-server", bottom.url)
    wired.worker()
    wait_for(lambda: digest_at(bottom, "acr/connected-registry", "1.0"), 90, "the initial syncs down to the floor")
    wait_for(lambda: all_finished(portal, 2), 60, "the initial runs to finish")

    [pushed] = populate(top.host, [ImageSpec("hello-world", "2.0", seed="top")])
    pushed_at = time.monotonic()
    wait_for(lambda: digest_at(bottom, "hello-world", "2.0") == pushed.digest, 30, "the tag on the grandchild")
    took = time.monotonic() - pushed_at
    assert digest_at(middle, "hello-world", "2.0") == pushed.digest
    by_registry = {}
    for run in portal.runs():
        by_registry.setdefault(run["registry"], []).append(run["trigger"])
    assert "message" in by_registry["factory"] and "message" in by_registry["floor"], by_registry
    assert took < 30


def test_read_write_round_trip_reaches_a_sibling_without_ping_pong(portal, wired):
    top, ship, store = wired.registry("top"), wired.registry("ship"), wired.registry("store")
    portal.manage("acr", "create", "--name", R, "--login-server", top.url, "--data-endpoint-enabled")
    top = wired.send_events(top, portal.events_secret(R))
    [base] = populate(top.host, [ImageSpec("app", "1.0")])
    portal.manage("acr", "connected-registry", "create", "--registry", R, "--name", "vessel", "--mode", "ReadWrite",
                  "--repository", "app", "--login-server", ship.url)
    portal.manage("acr", "connected-registry", "create", "--registry", R, "--name", "stores",
                  "--repository", "app", "--login-server", store.url)
    # The ReadWrite one sends its own events: pushes there are changes to carry up.
    ship = wired.send_events(ship, portal.events_secret(R, "vessel"))
    wired.worker()
    wait_for(lambda: digest_at(ship, "app", "1.0") == base.digest and digest_at(store, "app", "1.0") == base.digest,
             60, "the initial syncs")
    wait_for(lambda: all_finished(portal, 2), 60, "the initial runs to finish")

    [local] = populate(ship.host, [ImageSpec("app", "ship-1", seed="pushed at the ship")])
    pushed_at = time.monotonic()
    wait_for(lambda: digest_at(store, "app", "ship-1") == local.digest, 30, "the ship's push on the store")
    took = time.monotonic() - pushed_at
    assert digest_at(top, "app", "ship-1") == local.digest
    assert took < 30

    # Settled: the events of the syncs' own writes make no further change.
    time.sleep(3)
    settled = wait_for(lambda: all_finished(portal, len(portal.runs())), 30, "the runs to settle")
    assert all(r["status"] == "succeeded" for r in settled), settled
    assert len(settled) < 12, settled  # a bounded number of runs, no loop
    assert digest_at(ship, "app", "1.0") == base.digest and digest_at(top, "app", "1.0") == base.digest
