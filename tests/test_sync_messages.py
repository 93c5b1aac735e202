"""Which run is due (full comparison or sync messages), message TTL expiry
on an injected clock, and how a run settles its messages."""
from __future__ import annotations

import datetime as dt

import pytest

from connected import events, operations
from connected.messages import EventSource, SyncMessage
from connected.models import ConnectedRegistry, SyncRun
from connected.sync import dispatch, inbox
from connected.sync.dispatch import SyncFacts, decide
from connected.sync.engine import SyncResult, TagResult

pytestmark = pytest.mark.django_db

UTC = dt.timezone.utc
NOON = dt.datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def cr(schedule="* * * * *", window=None, ttl="P2D"):
    return ConnectedRegistry(name="factory", sync_schedule=schedule, sync_window=window, message_ttl=ttl)


def run(queued_at, status="succeeded", scope="full", finished_at=None):
    return SyncRun(queued_at=queued_at, status=status, scope=scope,
                   finished_at=finished_at or queued_at + dt.timedelta(seconds=5))


@pytest.fixture
def intervals(settings):
    settings.PORTAL = {**settings.PORTAL, "CONTINUOUS_SYNC_INTERVAL_SECONDS": 30,
                       "FULL_COMPARISON_INTERVAL_SECONDS": 600}


def test_continuous_with_events_wired_applies_messages_between_full_comparisons(intervals):
    full = run(NOON - dt.timedelta(minutes=5))
    wired = SyncFacts(last_run=full, last_full=full, last_good_full_at=full.queued_at, wired=True)
    assert decide(cr(), wired, NOON) is None  # nothing waiting, safety net not due
    assert decide(cr(), SyncFacts(**{**wired.__dict__, "pending": 2}), NOON) == ("message", "messages")
    # The safety net: a full comparison every FULL_COMPARISON_INTERVAL.
    assert decide(cr(), wired, NOON + dt.timedelta(minutes=6)) == ("continuous", "full")
    # Without events wired, it polls with a full comparison every CONTINUOUS_SYNC_INTERVAL.
    assert decide(cr(), SyncFacts(last_run=full, last_full=full), NOON) == ("continuous", "full")


def test_an_expired_message_calls_for_a_full_comparison(intervals):
    full = run(NOON - dt.timedelta(minutes=1))
    facts = SyncFacts(last_run=full, last_full=full, last_good_full_at=full.queued_at, wired=True, expired=1)
    assert decide(cr(), facts, NOON) == ("continuous", "full")


def test_nothing_starts_while_a_run_is_unfinished(intervals):
    busy = run(NOON, status="running")
    assert decide(cr(), SyncFacts(last_run=busy, pending=5, wired=True), NOON) is None


def test_messages_wait_after_a_failure_instead_of_retrying_in_a_loop(intervals):
    full = run(NOON - dt.timedelta(minutes=2))
    failed = run(NOON - dt.timedelta(seconds=20), status="failed", scope="messages")
    facts = SyncFacts(last_run=failed, last_full=full, last_good_full_at=full.queued_at, wired=True, pending=1)
    assert decide(cr(), facts, NOON) is None
    assert decide(cr(), facts, NOON + dt.timedelta(seconds=30)) == ("message", "messages")


def test_scheduled_messages_wait_for_the_window(intervals):
    daily = cr("0 12 * * *", "PT2H")
    full = run(NOON - dt.timedelta(days=1))
    facts = SyncFacts(last_run=full, last_full=full, last_good_full_at=full.queued_at, wired=True, pending=3)
    assert decide(daily, facts, NOON - dt.timedelta(minutes=1)) is None
    # The window opens: the messages are applied (no full comparison needed).
    assert decide(daily, facts, NOON) == ("schedule", "messages")
    # Inside the window, after its first run, new messages as they come.
    opened = run(NOON, scope="messages")
    inside = SyncFacts(**{**facts.__dict__, "last_run": opened})
    assert decide(daily, inside, NOON + dt.timedelta(minutes=30)) == ("message", "messages")
    assert decide(daily, inside, NOON + dt.timedelta(hours=3)) is None  # closed again


def test_scheduled_runs_a_full_comparison_when_messages_cannot_be_trusted(intervals):
    daily = cr("0 12 * * *", "PT2H", ttl="P2D")
    full = run(NOON - dt.timedelta(days=1))
    trusted = SyncFacts(last_run=full, last_full=full, last_good_full_at=full.queued_at, wired=True, pending=1)
    assert decide(daily, SyncFacts(**{**trusted.__dict__, "expired": 1}), NOON) == ("schedule", "full")
    assert decide(daily, SyncFacts(**{**trusted.__dict__, "wired": False}), NOON) == ("schedule", "full")
    old = run(NOON - dt.timedelta(days=3))  # older than the message TTL
    stale = SyncFacts(last_run=old, last_full=old, last_good_full_at=old.queued_at, wired=True, pending=1)
    assert decide(daily, stale, NOON) == ("schedule", "full")


def delivering(source):
    """As if the registry's first event with this secret had arrived."""
    EventSource.objects.filter(pk=source.pk).update(last_event_at=source.created_at)


@pytest.fixture
def scheduled(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    registry = operations.create_registry("myacrregistry", "http://127.0.0.1:1", data_endpoint_enabled=True,
                                          check_login_server=False)
    source, _ = events.generate_secret(registry)
    delivering(source)
    factory = operations.create_connected_registry(
        registry, "factory", ["hello-world"], login_server="http://127.0.0.1:2", sync_schedule="0 12 * * *",
        sync_window="PT2H", message_ttl="P1D", check_login_server=False)
    factory.runs.all().delete()
    SyncRun.objects.create(connected_registry=factory, trigger="schedule", status="succeeded",
                           queued_at=NOON - dt.timedelta(hours=20), finished_at=NOON - dt.timedelta(hours=20))
    return factory


def test_events_count_as_wired_once_one_came_with_the_current_secret(scheduled, client):
    assert dispatch.events_wired(scheduled)
    _, secret = events.generate_secret(scheduled.registry)  # a new secret, not yet in the registry's config
    assert not dispatch.events_wired(scheduled)  # so the portal keeps polling instead of waiting for events
    body = b'{"events": [{"id": "e1", "action": "pull", "target": {"repository": "hello-world"}}]}'
    assert client.post("/events/", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    assert dispatch.events_wired(scheduled)


def test_message_ttl_expiry_on_an_injected_clock(scheduled):
    created = NOON - dt.timedelta(hours=10)
    events.add_message(scheduled, action="push", repository="hello-world", tag="2.0", digest="sha256:1",
                       origin="registry myacrregistry", direction="down", now=created)
    [message] = SyncMessage.objects.all()
    assert message.expires_at == created + dt.timedelta(days=1)
    # Kept until the window: at noon it is still pending, and the window applies it.
    facts = dispatch.facts_of(scheduled, NOON)
    assert (facts.pending, facts.expired, facts.wired) == (1, 0, True)
    assert decide(scheduled, facts, NOON) == ("schedule", "messages")
    # A day later it expired unapplied: the next window compares everything.
    later = NOON + dt.timedelta(days=1)
    facts = dispatch.facts_of(scheduled, later)
    assert (facts.pending, facts.expired) == (0, 1)
    assert message.status(later) == "expired" and message.status(NOON) == "pending"
    assert decide(scheduled, facts, later) == ("schedule", "full")


def test_an_expired_message_counts_until_a_full_comparison_started_after_it(scheduled):
    events.add_message(scheduled, action="push", repository="hello-world", tag="2.0", digest="sha256:1",
                       origin="registry myacrregistry", direction="down", now=NOON - dt.timedelta(days=2))
    assert dispatch.facts_of(scheduled, NOON).expired == 1
    SyncRun.objects.create(connected_registry=scheduled, trigger="schedule", scope="full", status="succeeded",
                           queued_at=NOON - dt.timedelta(minutes=5), started_at=NOON - dt.timedelta(minutes=5),
                           finished_at=NOON - dt.timedelta(minutes=4))
    facts = dispatch.facts_of(scheduled, NOON)
    assert facts.expired == 0  # caught up: no full comparison every round from now on
    assert decide(scheduled, SyncFacts(**{**facts.__dict__, "pending": 1}), NOON) == ("schedule", "messages")


def test_a_disabled_data_endpoint_dispatches_nothing(scheduled):
    events.add_message(scheduled, action="push", repository="hello-world", tag="2.0", digest="sha256:1",
                       origin="registry myacrregistry", direction="down")
    operations.update_registry(scheduled.registry, data_endpoint_enabled=False)
    assert dispatch.dispatch_now([scheduled.pk]) == []
    assert "data endpoint" in " ".join(scheduled.sync_blockers())


def _messages(target, *subjects):
    for repo, tag in subjects:
        events.add_message(target, action="push", repository=repo, tag=tag, digest="", origin="test",
                           direction="down")


def test_a_messages_run_syncs_only_the_tags_named(scheduled):
    scheduled.repositories = ["hello-world", "app", "gone-soon"]
    _messages(scheduled, ("hello-world", "2.0"), ("hello-world", "3.0"), ("app", ""), ("not-synced", "1"))
    messages = list(SyncMessage.objects.all())
    repositories, only = inbox.scope(scheduled, messages)
    assert repositories == ["hello-world", "app"]
    assert only == {"hello-world": {"2.0", "3.0"}}  # app: known by digest only, the whole repository


def test_settling_acknowledges_what_went_through_and_releases_the_rest(scheduled):
    scheduled.repositories = ["hello-world", "app"]
    scheduled.save()
    _messages(scheduled, ("hello-world", "2.0"), ("app", "1.0"), ("dropped", "1"))
    run_ = SyncRun.objects.create(connected_registry=scheduled, trigger="message", scope="messages",
                                  status="running", started_at=dt.datetime.now(UTC))
    taken = inbox.take(scheduled, run_)
    assert len(taken) == 3
    result = SyncResult(tags=[TagResult("hello-world", "2.0", "copied", "sha256:2"),
                              TagResult("app", "1.0", "failed", reason="boom")])
    assert inbox.settle(scheduled, run_, result, taken) == 2
    by_repo = {m.repository: m for m in SyncMessage.objects.all()}
    assert by_repo["hello-world"].acknowledged_by == f"run {run_.pk}"
    assert by_repo["dropped"].acknowledged_by.endswith("the repository is not synced")
    assert by_repo["app"].status() == "pending" and by_repo["app"].taken_by_run is None  # waits for the next run


def test_a_stopped_run_releases_every_message(scheduled):
    _messages(scheduled, ("hello-world", "2.0"))
    run_ = SyncRun.objects.create(connected_registry=scheduled, trigger="message", scope="messages",
                                  status="running", started_at=dt.datetime.now(UTC))
    taken = inbox.take(scheduled, run_)
    assert inbox.settle(scheduled, run_, SyncResult(stopped="cancelled"), taken) == 0
    assert SyncMessage.objects.get().status() == "pending"


def test_a_full_comparison_acknowledges_what_waited_when_it_started(scheduled):
    _messages(scheduled, ("hello-world", "2.0"))
    started = dt.datetime.now(UTC)
    run_ = SyncRun.objects.create(connected_registry=scheduled, trigger="manual", scope="full", status="running",
                                  started_at=started)
    _messages(scheduled, ("hello-world", "3.0"))
    SyncMessage.objects.filter(tag="3.0").update(created_at=started + dt.timedelta(seconds=1))
    assert inbox.settle(scheduled, run_, SyncResult(), []) == 1
    assert SyncMessage.objects.get(tag="2.0").acknowledged_by == f"full comparison, run {run_.pk}"
    assert SyncMessage.objects.get(tag="3.0").status() == "pending"


@pytest.mark.registries
def test_the_engine_limited_to_tags_touches_nothing_else(parent_registry, child_registry):
    from connected.registry_client import RegistryClient
    from connected.sync.engine import RepositorySync, sync_repositories
    from devtools.images import ImageSpec, populate

    populate(parent_registry.host, [ImageSpec("hello-world", t) for t in ("1.0", "2.0", "3.0")])
    with RegistryClient(parent_registry.url) as parent, RegistryClient(child_registry.url) as child:
        first = sync_repositories(parent, child, ["hello-world"])
        assert first.count("copied") == 3
        populate(parent_registry.host, [ImageSpec("hello-world", "2.0", seed="moved"),
                                        ImageSpec("hello-world", "4.0"), ImageSpec("hello-world", "5.0")])
        parent.delete_manifest("hello-world", parent.head_manifest("hello-world", "1.0"))
        limited = RepositorySync(parent, child, delete_policy="mirror").sync(
            ["hello-world"], only_tags={"hello-world": {"2.0", "4.0"}})
        assert {(t.tag, t.outcome) for t in limited.tags} == {("2.0", "copied"), ("4.0", "copied")}
        assert sorted(child.list_tags("hello-world")) == ["1.0", "2.0", "3.0", "4.0"]  # 1.0 and 5.0 untouched
        assert child.head_manifest("hello-world", "2.0") == parent.head_manifest("hello-world", "2.0")
        deleted = RepositorySync(parent, child, delete_policy="mirror").sync(
            ["hello-world"], only_tags={"hello-world": {"1.0"}})
        assert [(t.tag, t.outcome) for t in deleted.tags] == [("1.0", "deleted")]


def test_messages_applied_inside_a_window_stop_at_its_end():
    daily = cr("0 12 * * *", "PT2H")
    inside = NOON + dt.timedelta(minutes=30)
    assert dispatch.window_deadline(daily, "message", inside) == NOON + dt.timedelta(hours=2)
    assert dispatch.window_deadline(daily, "schedule", inside) == NOON + dt.timedelta(hours=2)
    assert dispatch.window_deadline(daily, "manual", inside) is None
    assert dispatch.window_deadline(cr(), "message", inside) is None  # continuous: no window
