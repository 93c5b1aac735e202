"""Registry events in, sync messages out: the envelope, the /events/
receiver (secret, idempotency, errors), and who gets a message."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from connected import events, operations
from connected.audit import AuditEvent
from connected.messages import EventSource, ReceivedEvent, SyncMessage
from connected.models import SyncRun

pytestmark = pytest.mark.django_db

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def event(event_id="e1", action="push", repo="hello-world", tag="2.0", digest="sha256:" + "a" * 64,
          media_type=MANIFEST, actor=""):
    return {"id": event_id, "timestamp": "2026-12-03T12:00:00Z", "action": action,
            "target": {"mediaType": media_type, "size": 500, "digest": digest, "repository": repo, "tag": tag},
            "request": {"id": "r1", "addr": "127.0.0.1", "method": "PUT"}, "actor": {"name": actor},
            "source": {"addr": "reg:5000", "instanceID": "i1"}}


def envelope(*evs):
    return json.dumps({"events": list(evs)}).encode()


@pytest.fixture
def fleet(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    registry = operations.create_registry("myacrregistry", "http://127.0.0.1:1", data_endpoint_enabled=True,
                                          check_login_server=False)

    def cr(name, repos, **kw):
        return operations.create_connected_registry(registry, name, repos, check_login_server=False, **kw)

    top_a = cr("factory", ["hello-world", "acr/connected-registry"], login_server="http://127.0.0.1:2")
    top_b = cr("stores", ["hello-world"], message_ttl="P3D")
    other = cr("elsewhere", ["other"])
    writer = cr("vessel", ["hello-world", "app"], mode="ReadWrite", login_server="http://127.0.0.1:3")
    nested = cr("floor", ["hello-world"], parent=top_a)
    return registry, {c.name: c for c in (top_a, top_b, other, writer, nested)}


def post(client, body, secret):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return client.post("/events/", body, content_type="application/vnd.docker.distribution.events.v1+json",
                       **headers)


def test_a_push_at_the_registry_becomes_a_message_for_each_child_that_syncs_it(client, fleet):
    registry, crs = fleet
    _, secret = events.generate_secret(registry)
    before = timezone.now()
    response = post(client, envelope(event()), secret)
    assert response.status_code == 200, response.content
    assert response.json() == {"events": 1, "duplicates": 0, "ignored": 0, "messages": 3}
    messages = {m.connected_registry.name: m for m in SyncMessage.objects.select_related("connected_registry")}
    # Its children that sync hello-world; not 'elsewhere', not the grandchild (its parent passes it on).
    assert set(messages) == {"factory", "stores", "vessel"}
    for m in messages.values():
        assert (m.action, m.repository, m.tag, m.direction) == ("push", "hello-world", "2.0", "down")
        assert m.origin == "registry myacrregistry" and m.status() == "pending"
    assert messages["factory"].expires_at - messages["factory"].created_at == dt.timedelta(days=2)
    assert messages["stores"].expires_at - messages["stores"].created_at == dt.timedelta(days=3)
    assert messages["factory"].created_at >= before
    assert EventSource.objects.get().last_event_at is not None


def test_an_event_resent_is_stored_once(client, fleet):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    assert post(client, envelope(event()), secret).json()["messages"] == 3
    again = post(client, envelope(event()), secret)
    assert again.status_code == 200  # distribution must stop resending
    assert again.json() == {"events": 0, "duplicates": 1, "ignored": 0, "messages": 0}
    assert ReceivedEvent.objects.count() == 1 and SyncMessage.objects.count() == 3


def test_a_new_event_for_a_change_already_waiting_adds_no_message(client, fleet):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    post(client, envelope(event("e1")), secret)
    assert post(client, envelope(event("e2")), secret).json()["messages"] == 0
    assert SyncMessage.objects.count() == 3
    assert ReceivedEvent.objects.get(event_id="e2").note == "the same change is already waiting"


def test_pulls_mounts_and_blobs_are_ignored(client, fleet):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    body = envelope(event("p", action="pull"), event("m", action="mount"),
                    event("b", tag="", media_type="application/octet-stream"))
    assert post(client, body, secret).json() == {"events": 0, "duplicates": 0, "ignored": 3, "messages": 0}
    assert not ReceivedEvent.objects.exists()


def test_a_delete_by_digest_is_a_message_for_the_whole_repository(client, fleet):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    post(client, envelope(event(action="delete", tag="", media_type="")), secret)
    message = SyncMessage.objects.filter(connected_registry__name="factory").get()
    assert (message.action, message.tag, message.subject()) == ("delete", "", "hello-world@sha256:" + "a" * 64)


def test_a_push_to_a_read_write_registry_goes_up_and_down_to_its_children(client, fleet):
    registry, crs = fleet
    operations.create_connected_registry(registry, "deck1", ["app"], parent=crs["vessel"], check_login_server=False)
    _, secret = events.generate_secret(registry, crs["vessel"])
    assert post(client, envelope(event(repo="app")), secret).json()["messages"] == 2
    got = {(m.connected_registry.name, m.direction, m.origin) for m in SyncMessage.objects.all()}
    assert got == {("vessel", "up", "connected registry vessel"), ("deck1", "down", "connected registry vessel")}


def test_a_change_a_sync_made_is_not_sent_back_to_it(client, fleet):
    registry, crs = fleet
    _, vessel_secret = events.generate_secret(registry, crs["vessel"])
    _, top_secret = events.generate_secret(registry)
    sync_token = crs["vessel"].sync_token.name
    # The vessel's sync wrote it there: no message goes up again.
    assert post(client, envelope(event("v1", actor=sync_token)), vessel_secret).json()["messages"] == 0
    assert ReceivedEvent.objects.get(event_id="v1").note == "made by a sync: its run passes the change on"
    # The vessel's sync pushed it to the registry: the siblings get it, the vessel does not.
    post(client, envelope(event("t1", actor=sync_token)), top_secret)
    assert {m.connected_registry.name for m in SyncMessage.objects.all()} == {"factory", "stores"}


@pytest.mark.parametrize("secret", [None, "wrong", ""])
def test_events_without_the_secret_are_refused(client, fleet, secret):
    registry, _ = fleet
    events.generate_secret(registry)
    response = post(client, envelope(event()), secret)
    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]
    message = response.json()["errors"][0]["message"]
    assert "events secret" in message
    # A secret that was given but matches none says so (a stale one after a new secret, a typo).
    assert ("not (or no longer) that of any registry" in message) == (secret == "wrong")
    assert not ReceivedEvent.objects.exists()


def test_a_new_secret_replaces_the_old_one(client, fleet):
    registry, _ = fleet
    _, old = events.generate_secret(registry)
    _, new = events.generate_secret(registry)
    assert post(client, envelope(event()), old).status_code == 401
    assert post(client, envelope(event()), new).status_code == 200
    assert EventSource.objects.count() == 1
    stored = EventSource.objects.get()
    assert new not in stored.secret_sha256 and len(stored.secret_sha256) == 64
    assert AuditEvent.objects.filter(action="registry.generateEventsSecret").count() == 2
    assert not any(new in json.dumps(a.changes) for a in AuditEvent.objects.all())


@pytest.mark.parametrize("body, field", [
    (b"not json", "body"),
    (b"[]", "events"),
    (json.dumps({"events": [{"action": "push", "target": {"repository": "x"}}]}).encode(), "events[0].id"),
    (json.dumps({"events": [{"id": "1", "target": {"repository": "x"}}]}).encode(), "events[0].action"),
    (json.dumps({"events": [{"id": "1", "action": "push"}]}).encode(), "events[0].target"),
    (json.dumps({"events": [{"id": "1", "action": "push", "target": {}}]}).encode(), "events[0].target.repository"),
    (envelope(event(repo=5)), "events[0].target.repository: must be a repository name, not 5"),
    (envelope({**event(), "id": 7}), "events[0].id: must be a string of 1 to 100 characters, not 7"),
    (envelope(event(repo="a" * 256)), "events[0].target.repository"),
    (envelope(event(repo="../etc")), "events[0].target.repository"),
    (envelope(event(tag="t" * 129)), "events[0].target.tag"),
    (envelope(event(tag="../../x y")), "events[0].target.tag"),
    (envelope(event(tag={"not": "a tag"})), "events[0].target.tag"),
    (envelope(event(digest="not-a-digest")), "events[0].target.digest"),
    (envelope(event(digest="sha512:" + "a" * 144)), "events[0].target.digest"),
    (envelope(event(), {**event("e2"), "timestamp": "2026-13-45T00:00:00Z"}), "events[1].timestamp"),
    (envelope({**event(), "timestamp": "yesterday"}), "events[0].timestamp: must be an RFC 3339 date and time"),
    (envelope({**event(), "timestamp": 1733300000}), "events[0].timestamp: must be an RFC 3339 date and time"),
])
def test_a_bad_body_is_refused_naming_the_field_and_nothing_is_stored(client, fleet, body, field):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    response = post(client, body, secret)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith(field if ":" in field else field + ":")
    assert not ReceivedEvent.objects.exists() and not SyncMessage.objects.exists()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_not_declared_json_is_415_naming_content_type(client, fleet, content_type):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    response = client.post("/events/", envelope(event()), content_type=content_type,
                           HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 415
    assert response.json()["errors"][0]["message"].startswith("Content-Type:")
    assert not ReceivedEvent.objects.exists()
    assert client.post("/events/", envelope(event()), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


def test_a_sha512_digest_is_stored_whole(client, fleet):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    digest = "sha512:" + "b" * 128
    assert post(client, envelope(event(tag="", digest=digest, action="delete")), secret).status_code == 200
    assert ReceivedEvent.objects.get().digest == digest
    assert set(SyncMessage.objects.values_list("digest", flat=True)) == {digest}


def test_only_post(client, fleet):
    response = client.get("/events/")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["errors"][0]["message"] == "method GET is not allowed here: use POST"


def test_a_body_too_large_says_the_limit(client, fleet, settings):
    registry, _ = fleet
    _, secret = events.generate_secret(registry)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(client, envelope(*[event(f"e{i}") for i in range(20)]), secret)
    assert response.status_code == 413
    assert response.json()["errors"][0]["message"] == "body: too large (at most 1000 bytes)"


def test_messages_wake_the_connected_registries_at_once(client, fleet, settings, django_capture_on_commit_callbacks):
    registry, crs = fleet
    _, secret = events.generate_secret(registry)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, envelope(event()), secret)
    # factory and vessel are deployed (a login server): a messages run each; stores is not deployed.
    runs = {r.connected_registry.name: r for r in SyncRun.objects.select_related("connected_registry")}
    assert {"factory", "vessel"} <= set(runs) and "stores" not in runs
    # factory had never compared in full: its first run is a full comparison.
    assert runs["factory"].scope == "full"


def test_after_a_run_changes_go_on_to_children_and_siblings(fleet):
    from connected.sync.engine import TagResult

    registry, crs = fleet
    copied = TagResult("hello-world", "3.0", "copied", "sha256:" + "b" * 64)
    assert events.notify_after_run(crs["factory"], [copied]) == {crs["floor"].pk}
    [down] = SyncMessage.objects.filter(connected_registry=crs["floor"])
    assert (down.tag, down.direction, down.origin) == ("3.0", "down", "sync of connected registry factory")

    pushed = TagResult("hello-world", "v-1", "pushed", "sha256:" + "c" * 64)
    assert events.notify_after_run(crs["vessel"], [pushed]) == {crs["factory"].pk, crs["stores"].pk}
    # In sync: nothing to pass on.
    assert events.notify_after_run(crs["factory"], [TagResult("hello-world", "1", "in_sync", "x")]) == set()


def test_a_conflict_has_the_siblings_compare_the_whole_repository(fleet):
    from connected.sync.engine import TagResult

    registry, crs = fleet
    conflict = TagResult("hello-world", "1.0", "conflict", "sha256:" + "d" * 64, reason="kept as 1.0-conflict-...")
    assert events.notify_after_run(crs["vessel"], [conflict]) == {crs["factory"].pk, crs["stores"].pk}
    for message in SyncMessage.objects.all():
        assert (message.tag, message.digest, message.subject()) == ("", "", "hello-world (every tag)")
