"""The health check against real registries: states, reasons, history."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from connected import credentials, health, health_check, operations
from connected.models import ConnectedRegistry, ConnectionStateChange, Registry, SyncMessage, SyncRun
from connected.sync.runner import execute_run
from devtools.images import ImageSpec, populate

pytestmark = [pytest.mark.registries, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cr(parent_registry, child_registry):
    populate(parent_registry.host, [ImageSpec("hello-world", "1.0")])
    registry = operations.create_registry("myacrregistry", parent_registry.url, data_endpoint_enabled=True)
    return operations.create_connected_registry(registry, "factory01", ["hello-world"],
                                                login_server=child_registry.url)


def fresh(cr):
    return ConnectedRegistry.objects.get(pk=cr.pk)


def codes(cr):
    return [d["code"] for d in fresh(cr).status_details]


def test_a_healthy_registry_is_online_and_its_activity_kept(cr):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    ConnectedRegistry.objects.filter(pk=cr.pk).update(last_activity_at=None)
    assert health_check.check(fresh(cr)) == "Online"
    assert fresh(cr).last_activity_at is not None and codes(cr) == []


def test_an_unreachable_registry_is_offline_with_the_reason(cr, child_registry):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    child_registry.stop()
    assert health_check.check(fresh(cr)) == "Offline"
    assert codes(cr) == ["Unreachable"]
    change = ConnectionStateChange.objects.filter(connected_registry=cr).first()
    assert (change.previous_state, change.state) == ("Online", "Offline")
    assert change.status_details[0]["code"] == "Unreachable"
    # Checked again later: the detail still says since when it holds.
    first = fresh(cr).status_details[0]["timestamp"]
    later = timezone.now() + dt.timedelta(minutes=5)
    assert health_check.check(fresh(cr), now=later) == "Offline"
    assert fresh(cr).status_details[0]["timestamp"] == first


def history(cr):
    return [(c.previous_state, c.state, [d["code"] for d in c.status_details])
            for c in ConnectionStateChange.objects.filter(connected_registry=cr).order_by("at", "pk")]


def test_a_disabled_sync_token_makes_it_unhealthy_and_enabling_clears_it(cr):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    token = credentials.sync_token_of(cr)
    credentials.update_token_status(token, "disabled")
    # At once, not at the next check; and the check agrees: one cause, one change.
    assert fresh(cr).connection_state == "Unhealthy" and codes(cr) == ["SyncTokenDisabled"]
    assert execute_run(SyncRun.objects.create(connected_registry=cr).pk).status == "failed"  # refused
    assert health_check.check(fresh(cr)) == "Unhealthy" and codes(cr) == ["SyncTokenDisabled"]
    credentials.update_token_status(credentials.sync_token_of(cr), "enabled")
    assert fresh(cr).connection_state == "Online" and codes(cr) == []  # the refused run is no failed sync
    assert health_check.check(fresh(cr)) == "Online" and codes(cr) == []
    assert history(cr)[-2:] == [("Online", "Unhealthy", ["SyncTokenDisabled"]), ("Unhealthy", "Online", [])]


def test_a_disabled_data_endpoint_makes_it_unhealthy_at_once_and_enabling_clears_it(cr):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    operations.update_registry(cr.registry, data_endpoint_enabled=False)
    assert fresh(cr).connection_state == "Unhealthy" and codes(cr) == ["DataEndpointDisabled"]
    assert "--data-endpoint-enabled" in fresh(cr).status_details[0]["description"]
    assert health_check.check(fresh(cr)) == "Unhealthy" and codes(cr) == ["DataEndpointDisabled"]
    operations.update_registry(Registry.objects.get(), data_endpoint_enabled=True)
    assert fresh(cr).connection_state == "Online" and codes(cr) == []
    assert history(cr)[-2:] == [("Online", "Unhealthy", ["DataEndpointDisabled"]), ("Unhealthy", "Online", [])]


def test_a_change_of_facts_keeps_what_the_last_probe_found(cr, child_registry):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    child_registry.stop()
    assert health_check.check(fresh(cr)) == "Offline"
    activity = fresh(cr).last_activity_at
    operations.update_registry(cr.registry, data_endpoint_enabled=False)
    assert fresh(cr).connection_state == "Offline" and codes(cr) == ["Unreachable"]
    assert fresh(cr).last_activity_at == activity  # no probe was made: no activity heard


def test_a_failed_last_sync_is_a_reason(cr, parent_registry):
    parent_registry.stop()  # the child answers, its sync cannot
    assert execute_run(SyncRun.objects.create(connected_registry=cr).pk).status == "failed"
    assert health_check.check(fresh(cr)) == "Unhealthy"
    assert "LastSyncFailed" in codes(cr)


def test_every_change_is_in_the_history_including_the_runner_s(cr):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    states = list(ConnectionStateChange.objects.filter(connected_registry=cr).order_by("at", "pk")
                  .values_list("previous_state", "state"))
    assert states == [("Offline", "Online")]  # Syncing is transient: not kept
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)  # Online -> Syncing -> Online
    assert ConnectionStateChange.objects.filter(connected_registry=cr).count() == 1
    ConnectedRegistry.objects.filter(pk=cr.pk).update(connection_state="Offline")  # changed elsewhere
    health_check.record_state(fresh(cr), "Unhealthy", [])
    last = ConnectionStateChange.objects.filter(connected_registry=cr).first()
    assert (last.previous_state, last.state) == ("Online", "Unhealthy")  # no step lost


def test_never_deployed_is_offline_without_reasons(parent_registry):
    registry = operations.create_registry("myacrregistry", parent_registry.url, data_endpoint_enabled=True)
    cr = operations.create_connected_registry(registry, "notyet01", ["hello-world"])
    assert health_check.check(fresh(cr)) == "Offline" and codes(cr) == []
    assert health_check.check_all() == 0


def test_the_detail_page_shows_the_state_history(cr, client, django_user_model):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-1")
    client.force_login(user)
    html = client.get(f"/registries/myacrregistry/connected-registries/{cr.name}/").content.decode()
    assert "State history" in html and '<span class="badge state-online">Online</span>' in html


def test_check_all_probes_the_fleet_and_stores_each_state(cr, child_registry, registry_factory):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    other = operations.create_connected_registry(cr.registry, "store0042", ["hello-world"],
                                                 login_server=registry_factory("store").url)
    child_registry.stop()
    assert health_check.check_all() >= 1
    assert fresh(cr).connection_state == "Offline" and codes(cr) == ["Unreachable"]
    assert fresh(other).connection_state != "Offline"


# --- sync messages: behind by N changes, expired messages (ORM rows, injected clock and probe) -------

@pytest.fixture
def deployed(db):
    """A deployed connected registry whose last sync (a full comparison) succeeded; nothing is contacted."""
    registry = Registry.objects.create(name="myacrregistry", login_server="http://127.0.0.1:5001",
                                       data_endpoint_enabled=True)
    cr = ConnectedRegistry.objects.create(registry=registry, name="factory01", repositories=["hello-world"],
                                          login_server="http://127.0.0.1:5002", activation_status="Active")
    SyncRun.objects.create(connected_registry=cr, status="succeeded", scope="full", queued_at=T0,
                           started_at=T0, finished_at=T0 + dt.timedelta(minutes=1))
    ConnectedRegistry.objects.filter(pk=cr.pk).update(last_sync_at=T0 + dt.timedelta(minutes=1))
    return fresh(cr)


T0 = dt.datetime(2030, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
ANSWERS = health.Probe(reachable=True)


def message(cr, created, ttl=dt.timedelta(days=2), **fields):
    return SyncMessage.objects.create(connected_registry=cr, origin="registry myacrregistry", action="push",
                                      repository="hello-world", tag=fields.pop("tag", "1.0"), created_at=created,
                                      expires_at=created + ttl, **fields)


def details(cr):
    return {d["code"]: d["description"] for d in fresh(cr).status_details}


def test_a_continuous_registry_is_behind_by_its_messages_once_the_grace_passed(deployed):
    now = T0 + dt.timedelta(hours=2)
    message(deployed, now - dt.timedelta(seconds=100))
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Online"
    message(deployed, now - dt.timedelta(minutes=30), tag="2.0")
    message(deployed, now - dt.timedelta(hours=3), tag="0.9", acknowledged_at=now, acknowledged_by="run 1")
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Unhealthy"
    assert details(deployed) == {"BehindParent": "behind the parent by 2 changes (the oldest waiting 0.5 hours)"}
    SyncMessage.objects.update(acknowledged_at=now, acknowledged_by="run 2")
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Online" and codes(deployed) == []


def test_the_grace_follows_the_dispatch_interval(deployed, settings):
    now = T0 + dt.timedelta(hours=2)
    message(deployed, now - dt.timedelta(minutes=3))
    settings.PORTAL = {**settings.PORTAL, "DISPATCH_INTERVAL_SECONDS": 60}  # 4 rounds: 4 minutes
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Online"
    settings.PORTAL = {**settings.PORTAL, "DISPATCH_INTERVAL_SECONDS": 15}  # at least 2 minutes
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Unhealthy"


def test_a_scheduled_registry_is_behind_only_once_a_window_opened_since(deployed):
    ConnectedRegistry.objects.filter(pk=deployed.pk).update(sync_schedule="0 2 * * *", sync_window="PT3H")
    created = T0 + dt.timedelta(hours=6)  # after the 02:00-05:00 window
    message(deployed, created)
    next_day = T0 + dt.timedelta(days=1)
    assert health_check.check(fresh(deployed), next_day + dt.timedelta(hours=1), ANSWERS) == "Online"  # waits
    assert health_check.check(fresh(deployed), next_day + dt.timedelta(hours=2, minutes=1), ANSWERS) == "Online"
    assert health_check.check(fresh(deployed), next_day + dt.timedelta(hours=2, minutes=3), ANSWERS) == "Unhealthy"
    assert details(deployed) == {"BehindParent": "behind the parent by 1 change (the oldest waiting 20.1 hours)"}


def test_the_hours_rule_still_holds_after_a_failed_sync(deployed):
    now = T0 + dt.timedelta(hours=4)
    SyncRun.objects.create(connected_registry=deployed, status="failed", error="parent down",
                           queued_at=T0 + dt.timedelta(hours=1), finished_at=T0 + dt.timedelta(hours=1))
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Unhealthy"
    assert details(deployed)["BehindParent"] == "behind the parent by 4.0 hours"


def test_expired_messages_are_shown_until_a_full_comparison_succeeded_after_they_expired(deployed):
    created = T0 + dt.timedelta(hours=1)
    message(deployed, created, ttl=dt.timedelta(days=1))
    message(deployed, created, ttl=dt.timedelta(days=1), tag="2.0", acknowledged_at=created,
            acknowledged_by="run 1")  # applied: never expired
    message(deployed, T0 - dt.timedelta(days=3), ttl=dt.timedelta(days=1), tag="0.1")  # caught up by the T0 full run
    expired_at = created + dt.timedelta(days=1)
    now = expired_at + dt.timedelta(minutes=5)
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Unhealthy"
    assert details(deployed) == {
        "MessagesExpired": "1 sync message expired before it was applied; a full comparison catches up"}
    # A messages run does not catch up with them; a failed full comparison neither.
    SyncRun.objects.create(connected_registry=deployed, status="succeeded", scope="messages", queued_at=now,
                           finished_at=now)
    SyncRun.objects.create(connected_registry=deployed, status="failed", scope="full", queued_at=now,
                           finished_at=now)
    SyncRun.objects.create(connected_registry=deployed, status="succeeded", scope="messages", queued_at=now,
                           finished_at=now)
    assert health_check.check(fresh(deployed), now, ANSWERS) == "Unhealthy"
    assert "MessagesExpired" in details(deployed)
    later = now + dt.timedelta(minutes=10)
    SyncRun.objects.create(connected_registry=deployed, status="succeeded", scope="full", queued_at=later,
                           started_at=later, finished_at=later + dt.timedelta(minutes=1))
    assert health_check.check(fresh(deployed), later + dt.timedelta(minutes=2), ANSWERS) == "Online"
    assert codes(deployed) == []
