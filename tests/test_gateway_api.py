"""The gateway API (connected.api.gateway): the edge agent reads its
configuration and pending sync messages and acknowledges them, with its sync
token; and `acr connected-registry messages` for operators."""
from __future__ import annotations

import base64
import datetime as dt
import io
import json

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from connected import client_tokens, credentials, operations
from connected.api import gateway
from connected.messages import SyncMessage
from connected.models import AuditEvent, ConnectedRegistry

pytestmark = pytest.mark.django_db

REGISTRY = "myacrregistry"
NAME = "myconnectedregistry"
TOKEN = f"{NAME}-sync-token"
BASE = f"/gateway/{REGISTRY}/{NAME}"


@pytest.fixture(autouse=True)
def _clean_counters():
    cache.clear()  # the failure counters live there, keyed by token pk (reused between tests)
    yield
    cache.clear()


@pytest.fixture
def world():
    registry = operations.create_registry(REGISTRY, "http://127.0.0.1:9", data_endpoint_enabled=True,
                                          check_login_server=False)
    cr = operations.create_connected_registry(registry, NAME, ["hello-world", "acr/connected-registry"])
    other = operations.create_connected_registry(registry, "otherregistry", ["hello-world"])
    password = credentials.generate_password(cr.sync_token, 1)["value"]
    other_password = credentials.generate_password(other.sync_token, 1)["value"]
    return registry, cr, other, password, other_password


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(path, user=TOKEN, password=None, **params):
    headers = {"authorization": basic(user, password)} if password is not None else {}
    url = path if path.startswith("/gateway/") else BASE + path
    return Client(REMOTE_ADDR="10.0.0.7").get(url, params, headers=headers)


def post(path, body, user=TOKEN, password=None):
    headers = {"authorization": basic(user, password)} if password is not None else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return Client(REMOTE_ADDR="10.0.0.7").post(BASE + path, data, content_type="application/json", headers=headers)


def message(cr, tag, created, ttl=dt.timedelta(days=2), **fields):
    return SyncMessage.objects.create(connected_registry=cr, origin=f"registry {REGISTRY}", action="push",
                                      repository="hello-world", tag=tag, created_at=created,
                                      expires_at=created + ttl, **fields)


def the_error(response) -> str:
    errors = response.json()["errors"]
    assert len(errors) == 1
    return errors[0]["message"]


# --- config -------------------------------------------------------------------------

def test_config_is_the_connected_registrys_configuration(world):
    registry, cr, _, password, _ = world
    response = get("/config", password=password)
    assert response.status_code == 200, response.content
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert data["name"] == NAME and data["mode"] == "ReadOnly"
    assert data["parent"] == {"name": REGISTRY, "id": f"/registries/{REGISTRY}"}
    assert data["loginServer"] is None
    assert data["gatewayEndpoint"] == "127.0.0.1:9"
    assert data["syncProperties"] == {"schedule": "* * * * *", "syncWindow": None, "messageTtl": "P2D",
                                      "lastSyncTime": None}
    assert data["repositories"] == ["hello-world", "acr/connected-registry"]
    assert data["logging"] == {"logLevel": "Information"}
    assert data["activation"] == {"status": "Inactive"} and data["connectionState"] == "Offline"

    operations.update_connected_registry(cr, sync_schedule="0 12 * * *", sync_window="PT4H", message_ttl="P7D")
    data = get("/config", password=password).json()
    assert data["syncProperties"]["schedule"] == "0 12 * * *"
    assert data["syncProperties"]["syncWindow"] == "PT4H" and data["syncProperties"]["messageTtl"] == "P7D"


def test_every_authenticated_request_notes_the_last_activity(world):
    _, cr, _, password, _ = world
    assert cr.last_activity_at is None
    before = timezone.now()
    assert get("/messages", password=password).status_code == 200
    cr.refresh_from_db()
    assert cr.last_activity_at is not None and cr.last_activity_at >= before
    ConnectedRegistry.objects.filter(pk=cr.pk).update(last_activity_at=None)
    assert get("/config", password=password).status_code == 200
    cr.refresh_from_db()
    assert cr.last_activity_at is not None
    # A refused password is not the connected registry talking.
    ConnectedRegistry.objects.filter(pk=cr.pk).update(last_activity_at=None)
    assert get("/config", password="wrong").status_code == 401
    cr.refresh_from_db()
    assert cr.last_activity_at is None


# --- messages -------------------------------------------------------------------------

def test_messages_are_the_pending_ones_oldest_first(world):
    _, cr, other, password, _ = world
    now = timezone.now()
    newer = message(cr, "2.0", now - dt.timedelta(hours=1))
    older = message(cr, "1.0", now - dt.timedelta(hours=3))
    message(cr, "applied", now - dt.timedelta(hours=2), acknowledged_at=now, acknowledged_by="run 1")
    message(cr, "expired", now - dt.timedelta(days=3))
    message(other, "theirs", now - dt.timedelta(hours=4))

    response = get("/messages", password=password)
    assert response.status_code == 200, response.content
    data = response.json()
    assert [m["id"] for m in data["messages"]] == [older.pk, newer.pk]
    assert data["pending"] == 2
    first = data["messages"][0]
    assert first == {**older.as_json(), "status": "pending"}
    assert first["tag"] == "1.0" and first["action"] == "push" and first["direction"] == "down"

    data = get("/messages", password=password, limit="1").json()
    assert [m["id"] for m in data["messages"]] == [older.pk] and data["pending"] == 2


def test_messages_are_judged_at_the_time_of_the_request(world, monkeypatch):
    _, cr, _, password, _ = world
    start = timezone.now()
    short = message(cr, "short", start - dt.timedelta(hours=2), ttl=dt.timedelta(days=1))
    long = message(cr, "long", start - dt.timedelta(hours=1), ttl=dt.timedelta(days=3))
    assert [m["id"] for m in get("/messages", password=password).json()["messages"]] == [short.pk, long.pk]

    monkeypatch.setattr(gateway, "now", lambda: start + dt.timedelta(days=2))
    data = get("/messages", password=password).json()
    assert [m["id"] for m in data["messages"]] == [long.pk] and data["pending"] == 1
    assert data["messages"][0]["status"] == "pending"
    # Expired messages cannot be acknowledged either.
    assert post("/messages/ack", {"ids": [short.pk]}, password=password).json() == \
        {"acknowledged": 0, "unknown": [short.pk]}


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1", "", "1.5", "²"])
def test_a_bad_limit_is_refused_naming_it(world, limit):
    _, _, _, password, _ = world
    response = get("/messages", password=password, limit=limit)
    assert response.status_code == 400
    assert the_error(response) == "limit: must be a whole number from 1 to 1000 (default 100)"
    assert response.json()["errors"][0]["code"] == "INVALID"


def test_the_limit_goes_up_to_1000(world):
    _, cr, _, password, _ = world
    now = timezone.now()
    SyncMessage.objects.bulk_create(
        [SyncMessage(connected_registry=cr, origin="x", action="push", repository="hello-world", tag=f"t{i}",
                     created_at=now - dt.timedelta(seconds=2000 - i), expires_at=now + dt.timedelta(days=1))
         for i in range(1001)])
    data = get("/messages", password=password).json()
    assert len(data["messages"]) == 100 and data["pending"] == 1001
    data = get("/messages", password=password, limit="1000").json()
    assert len(data["messages"]) == 1000 and data["messages"][0]["tag"] == "t0"


# --- acknowledge ----------------------------------------------------------------------

def test_ack_acknowledges_pending_messages_of_this_connected_registry_only(world):
    _, cr, other, password, _ = world
    now = timezone.now()
    one = message(cr, "1.0", now - dt.timedelta(hours=2))
    two = message(cr, "2.0", now - dt.timedelta(hours=1))
    applied = message(cr, "0.9", now - dt.timedelta(hours=3), acknowledged_at=now, acknowledged_by="run 1")
    theirs = message(other, "1.0", now - dt.timedelta(hours=1))

    response = post("/messages/ack", {"ids": [one.pk, theirs.pk, applied.pk, 999999, one.pk]}, password=password)
    assert response.status_code == 200, response.content
    assert response.json() == {"acknowledged": 1, "unknown": [theirs.pk, applied.pk, 999999]}
    one.refresh_from_db()
    assert one.acknowledged_at is not None and one.acknowledged_by == f"gateway ({TOKEN})"
    assert one.status() == "applied"
    theirs.refresh_from_db()
    applied.refresh_from_db()
    assert theirs.acknowledged_at is None and applied.acknowledged_by == "run 1"
    assert [m["id"] for m in get("/messages", password=password).json()["messages"]] == [two.pk]

    # Idempotent: acknowledging again changes nothing and says so.
    again = post("/messages/ack", {"ids": [one.pk]}, password=password)
    assert again.json() == {"acknowledged": 0, "unknown": [one.pk]}

    events = AuditEvent.objects.filter(action="connectedRegistry.acknowledgeMessages").order_by("pk")
    assert events.count() == 2
    first = events[0]
    assert first.source == "api" and first.actor == TOKEN and first.object_name == NAME
    assert first.registry_name == REGISTRY
    assert first.changes["acknowledged"] == [None, [one.pk]]
    assert first.changes["unknown"] == [None, [theirs.pk, applied.pk, 999999]]
    assert password not in json.dumps(first.changes)


def test_a_huge_id_is_unknown_not_an_error(world):
    _, _, _, password, _ = world
    response = post("/messages/ack", {"ids": [2 ** 70, -1, 0]}, password=password)
    assert response.status_code == 200
    assert response.json() == {"acknowledged": 0, "unknown": [2 ** 70, -1, 0]}


@pytest.mark.parametrize("body, rule", [
    ("not json", "body: not JSON"),
    ("", "ids: required, a list of message ids (integers)"),
    ({}, "ids: required, a list of message ids (integers)"),
    ([1, 2], "ids: required, a list of message ids (integers)"),
    ({"ids": "1,2"}, "ids: must be a list of message ids (integers), not \"1,2\""),
    ({"ids": [1, "2"]}, "ids[1]: must be a message id (an integer), not \"2\""),
    ({"ids": [True]}, "ids[0]: must be a message id (an integer), not true"),
    ({"ids": [1.5]}, "ids[0]: must be a message id (an integer), not 1.5"),
    ({"ids": list(range(1, 1002))}, "ids: at most 1000 per request (1001 given)"),
])
def test_a_bad_ack_body_is_refused_naming_the_field(world, body, rule):
    _, cr, _, password, _ = world
    pending = message(cr, "1.0", timezone.now())
    response = post("/messages/ack", body, password=password)
    assert response.status_code == 400
    assert the_error(response).startswith(rule)
    pending.refresh_from_db()
    assert pending.acknowledged_at is None
    assert not AuditEvent.objects.filter(action="connectedRegistry.acknowledgeMessages").exists()


# --- who may ------------------------------------------------------------------------

def test_an_ack_not_declared_json_is_415_naming_content_type(world):
    password = world[3]
    response = Client(REMOTE_ADDR="10.0.0.7").post(BASE + "/messages/ack", '{"ids": [1]}', content_type="text/plain",
                                                   headers={"authorization": basic(TOKEN, password)})
    assert response.status_code == 415 and response.json()["errors"][0]["message"].startswith("Content-Type:")


def test_without_credentials_the_answer_is_a_basic_challenge(world):
    response = get("/messages")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Basic realm="')
    assert "HTTP Basic" in the_error(response)


def test_a_wrong_password_is_401_and_repeated_failures_are_throttled(world, settings):
    _, cr, _, password, _ = world
    settings.PORTAL = {**settings.PORTAL, "TOKEN_FAILURE_LIMIT": 3, "TOKEN_FAILURE_WINDOW_SECONDS": 60}
    message(cr, "1.0", timezone.now())
    for _ in range(3):
        response = get("/messages", password="wrong")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith('Basic realm="')
        assert the_error(response) == "invalid token name or password"
        assert "messages" not in response.json()
    response = get("/messages", password=password)  # even the right password waits now (not verified lately)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert the_error(response).startswith(f"too many failed attempts for token '{TOKEN}'")
    refusals = AuditEvent.objects.filter(action="gateway.refuse", object_name=TOKEN)
    assert {e.changes["reason"][1] for e in refusals} == {"wrong password", "too many failures"}
    assert all(password not in json.dumps(e.changes) for e in refusals)
    cache.clear()  # the window's end
    assert get("/messages", password=password).status_code == 200
    # Verified now: guesses from its address no longer stop the agent, only themselves.
    assert [get("/messages", password="wrong").status_code for _ in range(4)] == [401, 401, 401, 429]
    assert get("/messages", password=password).status_code == 200
    assert get("/messages", password="wrong").status_code == 429


def test_an_expired_password_is_401(world):
    _, cr, _, _, _ = world
    token = cr.sync_token
    value = credentials.generate_password(token, 2, expiration_in_days=1)["value"]
    token.refresh_from_db()
    token.password2_expires_at = timezone.now() - dt.timedelta(minutes=1)
    token.save()
    response = get("/config", password=value)
    assert response.status_code == 401 and "password2" in the_error(response) and "expired" in the_error(response)


def test_unknown_token_and_unknown_registry_look_like_a_wrong_password(world):
    _, _, _, password, _ = world
    for response in (get("/config", user="nobody", password=password),
                     get(f"/gateway/norregistry/{NAME}/config", password=password)):
        assert response.status_code == 401
        assert the_error(response) == "invalid token name or password"
        assert response["WWW-Authenticate"].startswith("Basic ")


def test_an_unknown_connected_registry_is_refused_like_another_ones(world):
    """A sync token cannot learn which other connected registries exist."""
    _, _, _, password, _ = world
    assert get(f"/gateway/{REGISTRY}/nosuchregistry/config", password="wrong").status_code == 401
    unknown = get(f"/gateway/{REGISTRY}/nosuchregistry/config", password=password)
    existing = get(f"/gateway/{REGISTRY}/otherregistry/config", password=password)
    assert unknown.status_code == existing.status_code == 403
    assert the_error(unknown) == (f"token '{TOKEN}' is not the sync token of connected registry 'nosuchregistry': "
                                  "only a connected registry's own sync token uses its gateway")


def test_another_connected_registrys_sync_token_is_refused(world):
    _, _, other, _, other_password = world
    response = get("/messages", user="otherregistry-sync-token", password=other_password)
    assert response.status_code == 403
    assert the_error(response) == ("token 'otherregistry-sync-token' is not the sync token of connected registry "
                                   f"'{NAME}': only a connected registry's own sync token uses its gateway")
    # Its own gateway answers it.
    response = get(f"/gateway/{REGISTRY}/otherregistry/messages", user="otherregistry-sync-token",
                   password=other_password)
    assert response.status_code == 200


def test_a_client_token_is_refused_even_if_attached(world):
    registry, cr, _, _, _ = world
    _, passwords = client_tokens.create_client_token(registry, "factoryreader", [["hello-world", "content/read"]])
    client_tokens.change_client_tokens(cr, add=["factoryreader"])
    for path in ("/config", "/messages"):
        response = get(path, user="factoryreader", password=passwords[0]["value"])
        assert response.status_code == 403
        assert "'factoryreader' is not the sync token" in the_error(response)
    cr.refresh_from_db()
    assert cr.last_activity_at is None


def test_a_disabled_sync_token_is_refused(world):
    _, cr, _, password, _ = world
    credentials.update_token_status(cr.sync_token, "disabled")
    for response in (get("/config", password=password), get("/messages", password=password),
                     post("/messages/ack", {"ids": [1]}, password=password)):
        assert response.status_code == 403
        assert the_error(response).startswith(f"sync token '{TOKEN}' is disabled")
        assert "--status enabled" in the_error(response)


def test_a_scope_map_without_the_gateway_action_is_refused_naming_it(world):
    _, cr, _, password, _ = world
    scope_map = cr.sync_token.scope_map
    needed = f"gateway/{NAME}/message/read"
    scope_map.actions = [a for a in scope_map.actions if a != needed]
    scope_map.save()
    response = get("/messages", password=password)
    assert response.status_code == 403
    assert f"lacks the action '{needed}'" in the_error(response)
    assert get("/config", password=password).status_code == 200  # config/read is still there
    scope_map.actions = [a for a in scope_map.actions if a != f"gateway/{NAME}/message/write"]
    scope_map.save()
    response = post("/messages/ack", {"ids": [1]}, password=password)
    assert response.status_code == 403 and f"'gateway/{NAME}/message/write'" in the_error(response)


def test_the_action_uses_the_lower_cased_name(world):
    registry, _, _, _, _ = world
    mixed = operations.create_connected_registry(registry, "MixedCase1", ["hello-world"])
    password = credentials.generate_password(mixed.sync_token, 1)["value"]
    assert "gateway/mixedcase1/message/read" in mixed.sync_token.scope_map.actions
    response = get(f"/gateway/{REGISTRY.upper()}/mixedcase1/messages", user="MixedCase1-sync-token",
                   password=password)
    assert response.status_code == 200, response.content


def test_with_the_data_endpoint_disabled_no_message_is_served(world):
    registry, cr, _, password, _ = world
    pending = message(cr, "1.0", timezone.now())
    operations.update_registry(registry, data_endpoint_enabled=False)
    reason = (f"the data endpoint of registry '{REGISTRY}' is disabled: no sync message is served (enable it: "
              f"python manage.py acr update --name {REGISTRY} --data-endpoint-enabled)")
    response = get("/messages", password=password)
    assert response.status_code == 403
    assert the_error(response) == reason and "messages" not in response.json()
    response = post("/messages/ack", {"ids": [pending.pk]}, password=password)
    assert response.status_code == 403 and the_error(response) == reason
    pending.refresh_from_db()
    assert pending.acknowledged_at is None
    # The configuration is not a message: still served, saying why.
    response = get("/config", password=password)
    assert response.status_code == 200 and response.json()["dataEndpointEnabled"] is False


@pytest.mark.parametrize("method, path", [("post", "/config"), ("post", "/messages"), ("get", "/messages/ack"),
                                          ("delete", "/messages"), ("put", "/messages/ack")])
def test_other_methods_are_405_in_json(world, method, path):
    _, _, _, password, _ = world
    response = getattr(Client(), method)(BASE + path, headers={"authorization": basic(TOKEN, password)})
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert response["Allow"] in ("GET", "POST")


def test_a_trailing_slash_is_accepted(world):
    _, _, _, password, _ = world
    assert get("/config/", password=password).status_code == 200
    assert post("/messages/ack/", {"ids": []}, password=password).json() == {"acknowledged": 0, "unknown": []}


# --- acr connected-registry messages ------------------------------------------------

def acr(*args) -> str:
    out = io.StringIO()
    call_command("acr", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_cli_lists_pending_messages_in_table_and_json(world):
    _, cr, other, _, _ = world
    now = timezone.now()
    newer = message(cr, "2.0", now - dt.timedelta(hours=1))
    older = SyncMessage.objects.create(connected_registry=cr, origin=f"connected registry {NAME}", action="delete",
                                       direction="up", repository="hello-world", digest="sha256:" + "a" * 64,
                                       created_at=now - dt.timedelta(hours=2), expires_at=now + dt.timedelta(days=1))
    applied = message(cr, "0.9", now - dt.timedelta(hours=3), acknowledged_at=now, acknowledged_by="run 1")
    expired = message(cr, "0.8", now - dt.timedelta(days=5))
    message(other, "theirs", now)

    args = ("connected-registry", "messages", "--registry", REGISTRY, "--name", NAME)
    data = json.loads(acr(*args))
    assert [m["id"] for m in data] == [older.pk, newer.pk]
    assert data[0]["status"] == "pending" and data[0]["direction"] == "up" and data[0]["tag"] is None

    lines = acr(*args, "--output", "table").splitlines()
    assert lines[0].split("  ")[0] == "ID"
    for column in ("ACTION", "SUBJECT", "DIRECTION", "ORIGIN", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS"):
        assert column in lines[0]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 4
    assert lines[2].split()[:4] == [str(older.pk), "delete", f"hello-world@sha256:{'a' * 64}", "up"]
    assert lines[3].split()[:4] == [str(newer.pk), "push", "hello-world:2.0", "down"]
    assert lines[3].rstrip().endswith("pending")
    assert newer.created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") in lines[3]

    everything = json.loads(acr(*args, "--all"))
    assert [m["id"] for m in everything] == [expired.pk, applied.pk, older.pk, newer.pk]
    assert [m["status"] for m in everything] == ["expired", "applied", "pending", "pending"]
    table = acr(*args, "--all", "-o", "table").splitlines()
    assert [line.split()[0] for line in table[2:]] == [str(expired.pk), str(applied.pk), str(older.pk),
                                                       str(newer.pk)]
    assert table[2].rstrip().endswith("expired") and table[3].rstrip().endswith("applied")


def test_cli_messages_of_an_unknown_connected_registry_names_the_flag(world):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as failure:
        acr("connected-registry", "messages", "--registry", REGISTRY, "--name", "nosuchregistry")
    assert str(failure.value).startswith("--name: ")
