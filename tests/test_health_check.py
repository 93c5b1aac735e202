"""The health check against real registries: states, reasons, history."""
from __future__ import annotations

import pytest

from connected import credentials, health_check, operations
from connected.models import ConnectedRegistry, ConnectionStateChange, SyncRun
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


def test_a_disabled_sync_token_makes_it_unhealthy_and_enabling_clears_it(cr):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    token = credentials.sync_token_of(cr)
    credentials.update_token_status(token, "disabled")
    assert health_check.check(fresh(cr)) == "Unhealthy"
    assert "SyncTokenDisabled" in codes(cr)
    credentials.update_token_status(credentials.sync_token_of(cr), "enabled")
    assert health_check.check(fresh(cr)) == "Online" and codes(cr) == []


def test_a_disabled_data_endpoint_makes_it_unhealthy(cr):
    execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    operations.update_registry(cr.registry, data_endpoint_enabled=False)
    assert health_check.check(fresh(cr)) == "Unhealthy"
    assert codes(cr) == ["DataEndpointDisabled"]


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
