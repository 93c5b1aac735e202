"""derive_state: the connection state and its typed reasons (pure, no I/O)."""
import datetime as dt

import pytest

from connected.health import HealthFacts, Probe, derive_state

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)
OK = dict(active=True, has_login_server=True, data_endpoint_enabled=True, sync_token_enabled=True,
          probe=Probe(reachable=True, authenticated=True), registry_name="myacrregistry")


def state(**changes):
    return derive_state(HealthFacts(**{**OK, **changes}), NOW, behind_after=dt.timedelta(hours=1))


def codes(result):
    return [d["code"] for d in result[1]]


@pytest.mark.parametrize("changes, expected_state, expected_codes", [
    ({}, "Online", []),
    ({"active": False}, "Offline", []),
    ({"has_login_server": False}, "Offline", []),
    ({"probe": Probe(reachable=False, error="connection refused")}, "Offline", ["Unreachable"]),
    ({"data_endpoint_enabled": False}, "Unhealthy", ["DataEndpointDisabled"]),
    ({"sync_token_enabled": False}, "Unhealthy", ["SyncTokenDisabled"]),
    ({"probe": Probe(reachable=True, authenticated=False, error="401")}, "Unhealthy", ["AuthenticationFailed"]),
    ({"last_run_status": "failed", "last_run_error": "boom"}, "Unhealthy", ["LastSyncFailed"]),
    ({"last_run_status": "partial"}, "Unhealthy", ["LastSyncFailed"]),
    ({"last_run_status": "window_closed"}, "Online", []),
    ({"running": True}, "Syncing", []),
    ({"running": True, "sync_token_enabled": False}, "Syncing", ["SyncTokenDisabled"]),
    ({"behind_since": NOW - dt.timedelta(minutes=59)}, "Online", []),
    ({"behind_since": NOW - dt.timedelta(hours=3), "pending_changes": 4}, "Unhealthy", ["BehindParent"]),
    ({"sync_token_enabled": False, "data_endpoint_enabled": False}, "Unhealthy",
     ["DataEndpointDisabled", "SyncTokenDisabled"]),
])
def test_state_and_reasons(changes, expected_state, expected_codes):
    result = state(**changes)
    assert (result[0], codes(result)) == (expected_state, expected_codes)


def test_details_are_typed_and_timestamped():
    [detail] = state(behind_since=NOW - dt.timedelta(hours=3), pending_changes=4)[1]
    assert detail == {"type": "Sync", "code": "BehindParent",
                      "description": "behind the parent by 4 changes, 3.0 hours", "timestamp": "2026-12-03T12:00:00Z"}
