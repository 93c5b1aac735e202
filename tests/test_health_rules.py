"""derive_state: the connection state and its typed reasons (pure, no I/O)."""
import datetime as dt

import pytest

from connected.health import HealthFacts, Probe, derive_state, late_since, message_grace

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
    # A run the registries refused failed on its credentials, not on sync.
    ({"last_run_status": "failed", "last_run_error": "password1 expired", "credentials_refused": True},
     "Unhealthy", ["AuthenticationFailed"]),
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


# --- behind by sync messages ------------------------------------------------------------

GRACE = dt.timedelta(seconds=120)


def behind(result):
    return next((d["description"] for d in result[1] if d["code"] == "BehindParent"), None)


def test_the_grace_is_four_dispatch_rounds_and_at_least_two_minutes():
    assert message_grace(15) == dt.timedelta(seconds=120)
    assert message_grace(30) == dt.timedelta(seconds=120)
    assert message_grace(60) == dt.timedelta(seconds=240)


@pytest.mark.parametrize("waited, expected", [
    (dt.timedelta(seconds=119), None),
    (dt.timedelta(seconds=120), "behind the parent by 3 changes (the oldest waiting 0.0 hours)"),
    (dt.timedelta(minutes=90), "behind the parent by 3 changes (the oldest waiting 1.5 hours)"),
])
def test_continuous_is_behind_once_its_oldest_message_waited_longer_than_the_grace(waited, expected):
    result = state(pending_changes=3, oldest_pending_at=NOW - waited)
    assert behind(result) == expected
    assert result[0] == ("Unhealthy" if expected else "Online")


def test_one_change_is_singular():
    assert behind(state(pending_changes=1, oldest_pending_at=NOW - dt.timedelta(hours=2))) == \
        "behind the parent by 1 change (the oldest waiting 2.0 hours)"


def test_the_grace_is_the_callers():
    facts = HealthFacts(**{**OK, "pending_changes": 2, "oldest_pending_at": NOW - dt.timedelta(minutes=3)})
    assert derive_state(facts, NOW, dt.timedelta(hours=1), grace=dt.timedelta(minutes=4))[0] == "Online"
    assert derive_state(facts, NOW, dt.timedelta(hours=1), grace=dt.timedelta(minutes=2))[0] == "Unhealthy"


# NOW is 12:00 UTC; "0 2 * * *" with PT3H: today's window was 02:00-05:00, the next opens tomorrow 02:00.
NIGHTLY = dict(sync_schedule="0 2 * * *", sync_window=dt.timedelta(hours=3))
TODAY = NOW.replace(hour=0)


@pytest.mark.parametrize("created, is_behind", [
    (TODAY.replace(hour=5, minute=30), False),  # after the window: waits for tomorrow's, normal
    (TODAY.replace(hour=4, minute=59), False),  # too late in the window to be applied: tomorrow's applies it
    (TODAY.replace(hour=1), True),  # before the window, which opened and closed without applying it
    (TODAY.replace(hour=3), True),  # inside the window, with time to apply it
    (TODAY.replace(hour=11, minute=59) - dt.timedelta(days=1), True),  # a window opened since
])
def test_scheduled_is_behind_only_when_a_window_had_time_to_apply_the_oldest_message(created, is_behind):
    result = state(pending_changes=2, oldest_pending_at=created, **NIGHTLY)
    assert (behind(result) is not None) == is_behind
    if is_behind:
        hours = (NOW - created).total_seconds() / 3600
        assert behind(result) == f"behind the parent by 2 changes (the oldest waiting {hours:.1f} hours)"


def test_late_since_a_window_had_the_grace_to_apply_them():
    assert late_since(NOW, GRACE) == NOW - GRACE  # continuous
    # Outside a window: those created up to grace before the last window's end.
    assert late_since(NOW, GRACE, **NIGHTLY) == TODAY.replace(hour=4, minute=58)
    # In a window open for longer than the grace: up to grace ago.
    assert late_since(TODAY.replace(hour=3), GRACE, **NIGHTLY) == TODAY.replace(hour=2, minute=58)
    # In a window that opened less than grace ago: the previous window's.
    yesterday = TODAY - dt.timedelta(days=1)
    assert late_since(TODAY.replace(hour=2, minute=1), GRACE, **NIGHTLY) == yesterday.replace(hour=4, minute=58)
    # Without a window, a scheduled registry's window is PT1H.
    assert late_since(NOW, GRACE, "0 2 * * *") == TODAY.replace(hour=2, minute=58)
    # Windows that always overlap: always open.
    assert late_since(NOW, GRACE, "0 * * * *", dt.timedelta(hours=2)) == NOW - GRACE


def test_hours_and_messages_together_make_one_detail():
    result = state(behind_since=NOW - dt.timedelta(hours=5), pending_changes=3,
                   oldest_pending_at=NOW - dt.timedelta(hours=1))
    assert codes(result) == ["BehindParent"]
    assert behind(result) == "behind the parent by 3 changes (the oldest waiting 1.0 hours); " \
                             "no successful sync for 5.0 hours"


def test_waiting_messages_of_a_scheduled_registry_do_not_hide_the_hours_rule():
    result = state(behind_since=NOW - dt.timedelta(hours=3), pending_changes=2,
                   oldest_pending_at=TODAY.replace(hour=6), **NIGHTLY)
    assert behind(result) == "behind the parent by 2 changes, 3.0 hours"


def test_a_schedule_stored_before_a_rule_existed_does_not_break_the_state():
    result = state(pending_changes=1, oldest_pending_at=NOW - dt.timedelta(hours=1), sync_schedule="not a cron")
    assert codes(result) == ["BehindParent"]


# --- expired messages ---------------------------------------------------------------------

@pytest.mark.parametrize("count, text", [
    (2, "2 sync messages expired before they were applied; a full comparison catches up"),
    (1, "1 sync message expired before it was applied; a full comparison catches up"),
])
def test_expired_messages_are_a_reason(count, text):
    result = state(expired_messages=count)
    assert result[0] == "Unhealthy"
    assert result[1] == [{"type": "Sync", "code": "MessagesExpired", "description": text,
                          "timestamp": "2026-12-03T12:00:00Z"}]


def test_reasons_come_in_the_order_to_act_on_them():
    result = state(last_run_status="failed", last_run_error="boom", behind_since=NOW - dt.timedelta(hours=2),
                   pending_changes=1, oldest_pending_at=NOW - dt.timedelta(hours=1), expired_messages=1,
                   running=True)
    assert result[0] == "Syncing"
    assert codes(result) == ["LastSyncFailed", "BehindParent", "MessagesExpired"]
