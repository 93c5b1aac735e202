"""Pruning sync messages and registry events: applied or expired messages and
received events older than the retention go (hourly, with the runs); a
pending message never does, however old, nor the event it comes from."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from connected import tasks
from connected.messages import EventSource, ReceivedEvent, SyncMessage, prune_messages
from connected.models import ConnectedRegistry, Registry, SyncRun

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
KEEP = dt.timedelta(days=30)


@pytest.fixture
def cr():
    registry = Registry.objects.create(name="myacrregistry", login_server="http://127.0.0.1:5001",
                                       data_endpoint_enabled=True)
    return ConnectedRegistry.objects.create(registry=registry, name="factory01", repositories=["hello-world"],
                                            message_ttl="P90D")


@pytest.fixture
def source(cr):
    return EventSource.generate(cr.registry)[0]


def event(source, event_id, received_at):
    return ReceivedEvent.objects.create(source=source, event_id=event_id, action="push", repository="hello-world",
                                        tag=event_id, received_at=received_at)


def message(cr, tag, created_at, ttl=dt.timedelta(days=2), **fields):
    return SyncMessage.objects.create(connected_registry=cr, origin="registry myacrregistry", action="push",
                                      repository="hello-world", tag=tag, created_at=created_at,
                                      expires_at=created_at + ttl, **fields)


def tags():
    return sorted(SyncMessage.objects.values_list("tag", flat=True))


def days(n):
    return dt.timedelta(days=n)


def test_applied_and_expired_messages_older_than_the_retention_go(cr):
    message(cr, "applied-long-ago", NOW - days(40), acknowledged_at=NOW - days(39), acknowledged_by="run 1")
    message(cr, "applied-recently", NOW - days(40), ttl=days(90), acknowledged_at=NOW - days(1),
            acknowledged_by="run 2")  # waited long, applied yesterday: kept
    message(cr, "expired-long-ago", NOW - days(40))  # expired 38 days ago
    message(cr, "expired-recently", NOW - days(10))  # expired 8 days ago
    message(cr, "pending-old", NOW - days(80), ttl=days(90))  # older than the retention, still pending
    message(cr, "pending-new", NOW - dt.timedelta(minutes=1))
    assert prune_messages(NOW, KEEP) == 2
    assert tags() == ["applied-recently", "expired-recently", "pending-new", "pending-old"]
    assert prune_messages(NOW, KEEP) == 0  # nothing more to do


def test_a_pending_message_is_never_deleted_however_short_the_retention(cr):
    message(cr, "pending", NOW - days(89), ttl=days(90))
    message(cr, "pending-taken", NOW - days(50), ttl=days(90),
            taken_by_run=SyncRun.objects.create(connected_registry=cr, status="running"))
    assert prune_messages(NOW, dt.timedelta(seconds=1)) == 0
    assert tags() == ["pending", "pending-taken"]
    assert SyncMessage.objects.pending(NOW).count() == 2


def test_old_events_go_unless_a_pending_message_comes_from_them(cr, source):
    old = event(source, "old", NOW - days(31))
    feeding = event(source, "feeding", NOW - days(60))
    recent = event(source, "recent", NOW - days(29))
    applied = message(cr, "applied", NOW - days(31), event=old, acknowledged_at=NOW - days(2))
    message(cr, "pending", NOW - days(60), ttl=days(90), event=feeding)
    assert prune_messages(NOW, KEEP) == 1  # the old event; its message was applied two days ago
    assert sorted(ReceivedEvent.objects.values_list("event_id", flat=True)) == ["feeding", "recent"]
    applied.refresh_from_db()
    assert applied.event is None  # the message stays, without its event
    assert recent.pk and tags() == ["applied", "pending"]


def test_many_old_events_go_in_batches(cr, source):
    ReceivedEvent.objects.bulk_create([
        ReceivedEvent(source=source, event_id=f"ev-{i}", action="push", repository="hello-world",
                      received_at=NOW - days(40)) for i in range(1200)])
    assert prune_messages(NOW, KEEP) == 1200
    assert not ReceivedEvent.objects.exists()


def test_the_hourly_prune_task_prunes_messages_and_events_too(cr, source, settings):
    settings.PORTAL = {**settings.PORTAL, "RUN_RETENTION_DAYS": 30}
    now = timezone.now()
    message(cr, "applied-long-ago", now - days(40), acknowledged_at=now - days(35))
    message(cr, "expired-long-ago", now - days(40))
    message(cr, "pending", now - days(40), ttl=days(90))
    event(source, "old", now - days(31))
    event(source, "new", now - days(1))
    assert tasks.prune_runs() == 3
    assert tags() == ["pending"]
    assert list(ReceivedEvent.objects.values_list("event_id", flat=True)) == ["new"]
