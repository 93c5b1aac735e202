"""The detail page and its actions: sync now, cancel, activate, deactivate,
delete (typed name), the sync token (status, one-time password), the runs
with their progress; and that a viewer reaches none of them."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from connected import credentials, operations
from connected.models import AuditEvent, ConnectedRegistry, SyncMessage, SyncRun, Token

from tests.test_pages import admin_client, administrator, registry, viewer, viewer_client  # noqa: F401

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
ACTIONS = ["connected_registry_sync", "connected_registry_cancel", "connected_registry_activate",
           "connected_registry_deactivate", "connected_registry_delete", "connected_registry_properties",
           "connected_registry_repositories", "connected_registry_token_status",
           "connected_registry_generate_password"]


@pytest.fixture
def cr(registry):
    cr = operations.create_connected_registry(registry, "factory01", ["hello-world"])
    # Bound to an instance without contacting it (the operations would ping it).
    ConnectedRegistry.objects.filter(pk=cr.pk).update(login_server="http://127.0.0.1:5002",
                                                      activation_status="Active", connection_state="Online")
    cr.refresh_from_db()
    return cr


def url(name, cr, *args):
    return reverse(name, args=[cr.registry.name, cr.name, *args])


def detail(client, cr, **kwargs):
    return client.get(url("connected_registry_detail", cr), **kwargs).content.decode()


# --- permissions ------------------------------------------------------------------

@pytest.mark.parametrize("name", ACTIONS)
def test_viewer_gets_403_on_every_action_and_nothing_changes(viewer_client, cr, name):
    before = (ConnectedRegistry.objects.values().get(), Token.objects.values().get())
    response = viewer_client.post(url(name, cr), {"confirm_name": "factory01", "password": "1", "status": "disabled",
                                                  "add": "x/y", "sync_type": "scheduled",
                                                  "sync_schedule": "0 1 * * *"})
    assert response.status_code == 403
    assert (ConnectedRegistry.objects.values().get(), Token.objects.values().get()) == before
    assert not SyncRun.objects.exists() and not AuditEvent.objects.filter(source="web").exists()


@pytest.mark.parametrize("name", ACTIONS)
def test_actions_are_post_only(admin_client, cr, name):
    assert admin_client.get(url(name, cr)).status_code == 405


@pytest.mark.parametrize("name", ACTIONS)
def test_actions_check_csrf(administrator, cr, name):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(administrator)
    assert client.post(url(name, cr), {"confirm_name": "factory01"}).status_code == 403
    assert ConnectedRegistry.objects.filter(pk=cr.pk).exists()


def test_viewer_sees_no_action_and_no_secret(viewer_client, cr):
    credentials.generate_password(cr.sync_token, 1)
    html = detail(viewer_client, cr)
    for name in ACTIONS:
        assert url(name, cr) not in html
    for word in ("Sync now", "Deactivate", "Generate password", "Delete", "Edit sync properties", "Turn off"):
        assert word not in html
    assert "password1" in html  # the slot's name and date, never a value
    assert "SyncTokenPassword" not in html


# --- detail ------------------------------------------------------------------------

def test_detail_overview(admin_client, cr):
    ConnectedRegistry.objects.filter(pk=cr.pk).update(
        connection_state="Unhealthy", last_sync_at=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
        status_details=[{"type": "Sync", "code": "E42", "description": "parent unreachable",
                         "timestamp": "2024-05-06T07:00:00Z"}])
    html = detail(admin_client, cr)
    assert '<span class="badge state-unhealthy">Unhealthy</span>' in html
    assert "parent unreachable" in html and "E42" in html and "Why it is in this state" in html
    assert "2024-05-06 07:08:09 UTC" in html and "http://127.0.0.1:5002" in html and "Active" in html
    assert "<code>hello-world</code>" in html and "factory01-sync-token" in html
    assert "Sync now" in html and "hx-trigger" not in html.split('id="cr-properties"')[0]


def test_detail_says_why_sync_cannot_run(admin_client, registry):
    cr = operations.create_connected_registry(registry, "factory02", ["hello-world"])
    html = detail(admin_client, cr)
    assert "<strong>Cannot sync</strong>: it has no login server" in html
    assert re.search(r"disabled title=\"it has no login server[^\"]*\">Sync now", html)


def test_running_run_shows_a_live_progress_bar(admin_client, cr):
    started = timezone.now() - dt.timedelta(seconds=30)
    SyncRun.objects.create(connected_registry=cr, status="running", started_at=started, bytes_planned=4 * 2**20,
                           bytes_moved=2**20, tags_planned=4, tags_done=1)
    html = detail(admin_client, cr)
    assert 'hx-trigger="every 2s"' in html
    assert '<progress max="100" value="25"' in html
    assert "25% · 1.0\xa0MB of 4.0\xa0MB · about 1m 30s left" in html
    assert "Cancel sync" in html
    partial = detail(admin_client, cr, headers=HX)
    assert partial.lstrip().startswith('<div id="cr-live"') and "<html" not in partial


def test_finished_runs_stop_the_polling_and_open_their_ledger(admin_client, cr):
    run = SyncRun.objects.create(connected_registry=cr, status="succeeded", started_at=timezone.now(),
                                 finished_at=timezone.now(), tags_copied=3)
    html = detail(admin_client, cr)
    assert 'hx-trigger="every' not in html.split('id="cr-properties"')[0]
    assert url("run_detail", cr, run.pk) in html
    page = admin_client.get(url("run_detail", cr, run.pk)).content.decode()
    assert "Tags (0)" in page and "This run recorded no tags." in page


# --- sync now, cancel ------------------------------------------------------------

def test_sync_now_then_cancel(admin_client, cr):
    response = admin_client.post(url("connected_registry_sync", cr), headers=HX)
    run = SyncRun.objects.get()
    html = response.content.decode()
    assert (run.trigger, run.status) == ("manual", "queued")
    assert f"Sync of factory01 queued (run {run.pk})." in html and 'hx-trigger="every 2s"' in html
    assert "waiting for a worker" in html
    event = AuditEvent.objects.get(action="connectedRegistry.resync")
    assert (event.actor, event.source) == ("opsadmin", "web")

    html = admin_client.post(url("connected_registry_cancel", cr), headers=HX).content.decode()
    run.refresh_from_db()
    assert run.status == "cancelled" and f"Run {run.pk} of factory01 cancelled." in html


def test_sync_now_without_htmx_redirects_with_a_message(admin_client, cr):
    response = admin_client.post(url("connected_registry_sync", cr), follow=True)
    assert "Sync of factory01 queued" in response.content.decode()


def test_sync_now_refusal_is_shown(admin_client, registry):
    cr = operations.create_connected_registry(registry, "factory02", ["hello-world"])
    html = admin_client.post(url("connected_registry_sync", cr), headers=HX).content.decode()
    assert "cannot sync &#x27;factory02&#x27;: it has no login server" in html
    assert not SyncRun.objects.exists()


# --- activate, deactivate, delete ---------------------------------------------------

def test_deactivate_then_activation_error_in_place(admin_client, cr):
    html = admin_client.post(url("connected_registry_deactivate", cr), headers=HX).content.decode()
    cr.refresh_from_db()
    assert (cr.activation_status, cr.login_server, cr.connection_state) == ("Inactive", "", "Offline")
    assert "deactivated" in html and 'name="login_server"' in html
    html = admin_client.post(url("connected_registry_activate", cr), {"login_server": "ftp://x"},
                             headers=HX).content.decode()
    assert "is not a valid login server URL" in html
    cr.refresh_from_db()
    assert cr.activation_status == "Inactive"


def test_delete_needs_the_typed_name(admin_client, cr):
    response = admin_client.post(url("connected_registry_delete", cr), {"confirm_name": "factory0"}, headers=HX)
    assert response.status_code == 422 and "Type the name" in response.content.decode()
    assert ConnectedRegistry.objects.exists()
    response = admin_client.post(url("connected_registry_delete", cr), {"confirm_name": "factory01"}, headers=HX)
    assert response["HX-Redirect"] == reverse("connected_registry_list", args=["myacrregistry"])
    assert not ConnectedRegistry.objects.exists() and not Token.objects.exists()
    assert AuditEvent.objects.get(action="connectedRegistry.delete").source == "web"


def test_delete_refused_while_children_exist(admin_client, cr):
    operations.create_connected_registry(cr.registry, "floor0001", ["hello-world"], parent=cr)
    html = detail(admin_client, cr)
    assert "cannot be deleted while it has connected registries below it (floor0001)" in html
    response = admin_client.post(url("connected_registry_delete", cr), {"confirm_name": "factory01"}, headers=HX)
    assert response.status_code == 422 and ConnectedRegistry.objects.filter(pk=cr.pk).exists()


# --- sync token and the one-time password ------------------------------------------------

def test_token_off_and_on(admin_client, cr):
    html = admin_client.post(url("connected_registry_token_status", cr), {"status": "disabled"},
                             headers=HX).content.decode()
    assert html.lstrip().startswith('<section id="cr-token"') and "Sync is stopped" in html
    assert Token.objects.get().status == "disabled"
    assert "SyncTokenDisabled" in detail(admin_client, cr)
    admin_client.post(url("connected_registry_token_status", cr), {"status": "enabled"}, headers=HX)
    assert Token.objects.get().status == "enabled"


def test_password_is_shown_once_and_never_again(admin_client, cr):
    response = admin_client.post(url("connected_registry_generate_password", cr),
                                 {"password": "2", "parent_protocol": "https"}, headers=HX)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    password = re.search(r'<code id="new-password" class="secret">([^<]+)</code>', html).group(1)
    connection = re.search(r'<code id="new-connection-string" class="secret">([^<]+)</code>', html).group(1)
    assert connection == ("ConnectedRegistryName=factory01;SyncTokenName=factory01-sync-token;"
                          f"SyncTokenPassword={password};ParentGatewayEndpoint=127.0.0.1:5001;"
                          "ParentEndpointProtocol=https")
    assert "data-dismiss" in html and 'data-copy="#new-connection-string"' in html
    token = Token.objects.get()
    assert token.verify_password(password) == 2
    # Never again: not in the page, not in the session, not in the audit trail.
    assert password not in detail(admin_client, cr) and "password2" in detail(admin_client, cr)
    assert password not in str(dict(admin_client.session))
    assert password not in str(list(AuditEvent.objects.values()))


def test_password_protocol_rule_is_the_operations(admin_client, cr):
    response = admin_client.post(url("connected_registry_generate_password", cr),
                                 {"password": "1", "parent_protocol": "http"}, headers=HX)
    assert response.status_code == 422 and "no-store" in response["Cache-Control"]
    assert "reached over https only" in response.content.decode()
    assert not Token.objects.get().password1_hash


# --- sync messages and run scopes ----------------------------------------------------------

def add_message(cr, created, tag="1.0", ttl=dt.timedelta(days=2), **fields):
    fields = {"origin": "registry myacrregistry", "action": "push", **fields}
    return SyncMessage.objects.create(connected_registry=cr, repository="hello-world", tag=tag, created_at=created,
                                      expires_at=created + ttl, **fields)


def message_rows(html):
    tbody = re.search(r'<tbody id="sync-message-rows">(.*?)</tbody>', html, re.S).group(1)
    return re.findall(r"<tr>(.*?)</tr>", tbody, re.S)


def test_detail_lists_the_sync_messages_pending_first(viewer_client, cr):
    now = timezone.now()
    add_message(cr, now - dt.timedelta(minutes=1), tag="applied", acknowledged_at=now - dt.timedelta(seconds=30),
                acknowledged_by="run 7")
    add_message(cr, now - dt.timedelta(days=3), tag="expired")
    add_message(cr, now - dt.timedelta(hours=2), tag="older")
    add_message(cr, now - dt.timedelta(minutes=5), tag="", digest="sha256:" + "d" * 64, action="delete",
                direction="up", origin="connected registry factory01")
    html = detail(viewer_client, cr)
    counts = re.search(r'<dd id="sync-message-counts">(.*?)</dd>', html, re.S).group(1)
    assert "2 pending" in counts and "1 expired" in counts and "the oldest since" in counts
    rows = message_rows(html)
    subjects = [re.search(r"<code[^>]*>([^<]+)</code>", row).group(1) for row in rows]
    assert subjects == ["hello-world@sha256:" + "d" * 64, "hello-world:older", "hello-world:applied",
                        "hello-world:expired"]
    assert '<span class="badge sync-pending">pending</span>' in rows[0]
    assert "delete" in rows[0] and "to the parent" in rows[0] and "connected registry factory01" in rows[0]
    assert "from the parent" in rows[1]
    assert '<span class="badge sync-applied">applied</span>' in rows[2] and "run 7" in rows[2]
    assert '<span class="badge sync-expired">expired</span>' in rows[3]


def test_detail_without_messages_says_how_they_arrive(viewer_client, cr):
    html = detail(viewer_client, cr)
    assert "none pending" in html and "expired" not in re.search(
        r'<dd id="sync-message-counts">(.*?)</dd>', html, re.S).group(1)
    assert "No sync messages recorded." in html and "acr events-secret generate --registry myacrregistry" in html


def test_detail_shows_the_most_recent_messages_with_a_constant_number_of_queries(viewer_client, cr,
                                                                                 django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    for i in range(3):
        add_message(cr, now - dt.timedelta(minutes=i), tag=f"v{i}")
    detail(viewer_client, cr)  # warm the session
    with CaptureQueriesContext(connection) as few:
        detail(viewer_client, cr)
    SyncMessage.objects.bulk_create([
        SyncMessage(connected_registry=cr, origin="registry myacrregistry", action="push", repository="hello-world",
                    tag=f"t{i}", created_at=now - dt.timedelta(hours=1, minutes=i),
                    expires_at=now + dt.timedelta(days=1), acknowledged_at=now if i % 2 else None)
        for i in range(80)])
    with django_assert_num_queries(len(few.captured_queries)):
        html = detail(viewer_client, cr)
    assert len(message_rows(html)) == 50
    assert "43 pending" in html  # 3 + 40


def test_runs_show_their_scope_next_to_their_trigger(viewer_client, cr):
    full = SyncRun.objects.create(connected_registry=cr, status="succeeded", trigger="continuous", scope="full")
    SyncRun.objects.create(connected_registry=cr, status="succeeded", trigger="message", scope="messages")
    html = detail(viewer_client, cr)
    assert '<th scope="col">Trigger</th>\n            <th scope="col">Scope</th>' in html
    assert re.search(r"<td>message</td>\s*<td[^>]*>sync messages</td>", html)
    assert re.search(r"<td>continuous</td>\s*<td[^>]*>full comparison</td>", html)
    page = viewer_client.get(url("run_detail", cr, full.pk)).content.decode()
    assert "<dt>Scope</dt><dd>full comparison</dd>" in page


def test_the_live_part_carries_the_messages(viewer_client, cr):
    add_message(cr, timezone.now(), tag="live")
    partial = detail(viewer_client, cr, headers=HX)
    assert partial.lstrip().startswith('<div id="cr-live"') and "hello-world:live" in partial
