"""The Django admin for support staff: every page renders, filters and
search, a constant number of queries, no secret anywhere, changes through the
operations (validated, audited as the admin user), refused deletes, actions,
a read-only audit trail and the "Support staff" group.

Rows are made with the operations (no login server, so nothing is pinged) or
the ORM; tests that bind a deployed instance use real registries."""
from __future__ import annotations

import datetime as dt
import importlib
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.timezone import now as django_now

from connected import credentials, events, health_check, operations
from connected.admin.access import slot_text
from connected.audit import Actor, AuditEvent
from connected.messages import EventSource, ReceivedEvent, SyncMessage
from connected.models import ConnectedRegistry, Registry, ScopeMap, SyncRun, SyncRunTag, Token

pytestmark = pytest.mark.django_db

SUPPORT_GROUP = "Support staff"
MIGRATION = "connected.migrations.0005_support_staff_group"
MESSAGES_MIGRATION = "connected.migrations.0010_support_staff_messages"
SETUP = Actor("setup", "cli")


def url(view, *args):
    return reverse(f"admin:connected_{view}", args=args)


def cr_url(view, cr):
    return url(f"connectedregistry_{view}", cr.pk)


@pytest.fixture
def registry():
    return Registry.objects.create(name="myacrregistry", login_server="http://127.0.0.1:5001",
                                   data_endpoint_enabled=True)


@pytest.fixture
def tree(registry):
    """zroot (ReadWrite) > bchild, and aroot: made by the operations (tokens, scope maps, audit)."""
    zroot = operations.create_connected_registry(registry, "zroot", ["hello-world", "app/frontend"],
                                                 mode="ReadWrite", actor=SETUP)
    bchild = operations.create_connected_registry(registry, "bchild", ["hello-world"], parent=zroot,
                                                  sync_schedule="0 2 * * *", sync_window="PT3H", actor=SETUP)
    aroot = operations.create_connected_registry(registry, "aroot", ["tools/busybox"], actor=SETUP)
    return {"zroot": zroot, "bchild": bchild, "aroot": aroot}


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("rootadmin", password="s3cret-pass")
    client.force_login(user)
    return client


@pytest.fixture
def support_group():
    group = Group.objects.filter(name=SUPPORT_GROUP).first()
    if group is None:  # flushed by a transactional test that ran before: the migration's own code makes it
        from django.apps import apps
        importlib.import_module(MIGRATION).create_support_staff(apps, connection.schema_editor())
        importlib.import_module(MESSAGES_MIGRATION).grant_view(apps, connection.schema_editor())
        group = Group.objects.get(name=SUPPORT_GROUP)
    return group


@pytest.fixture
def support(client, support_group):
    user = get_user_model().objects.create_user("sam", password="s3cret-pass", is_staff=True)
    user.groups.add(support_group)
    client.force_login(user)
    return client


def bind(cr, login_server="http://127.0.0.1:5002", **fields):
    """Make cr look deployed without pinging anything (ORM)."""
    ConnectedRegistry.objects.filter(pk=cr.pk).update(login_server=login_server, activation_status="Active",
                                                      **fields)
    cr.refresh_from_db()
    return cr


def change_data(cr, **overrides):
    """The POST of an unchanged connected-registry change form, with overrides."""
    data = {"repositories": "\n".join(cr.repositories), "sync_schedule": cr.sync_schedule,
            "sync_window": cr.sync_window or "", "message_ttl": cr.message_ttl, "log_level": cr.log_level,
            "login_server": cr.login_server, "_save": "Save"}
    data.update(overrides)
    return data


def action(client, model, name, objs, **extra):
    return client.post(url(f"{model}_changelist"), {"action": name, "_selected_action": [o.pk for o in objs],
                                                    **extra}, follow=True)


def changelist_names(html):
    return re.findall(r'class="field-name"><a [^>]*>([^<]+)</a>', html)


def changelist_row(html, name):
    return re.search(rf'<tr>(?:(?!</tr>).)*class="field-name"><a [^>]*>{name}</a>.*?</tr>', html, re.S).group(0)


def snapshot():
    """Everything an admin change could touch, to compare before and after a refusal."""
    return {
        "crs": list(ConnectedRegistry.objects.order_by("pk").values()),
        "tokens": list(Token.objects.order_by("pk").values()),
        "scope_maps": list(ScopeMap.objects.order_by("pk").values()),
        "runs": list(SyncRun.objects.order_by("pk").values()),
        "audit": AuditEvent.objects.count(),
        "log": LogEntry.objects.count(),
    }


def admin_events(action_name=None):
    events = AuditEvent.objects.filter(source="admin")
    return events.filter(action=action_name) if action_name else events


# --- every page renders ------------------------------------------------------------------------------

@pytest.fixture
def everything(tree):
    """One row of every model: runs with a tag ledger, a password, audit events."""
    run = SyncRun.objects.create(connected_registry=tree["zroot"], status="succeeded", trigger="manual")
    SyncRunTag.objects.create(run=run, repository="hello-world", tag="latest", digest="sha256:" + "a" * 64,
                              outcome="copied", bytes_moved=123)
    token = tree["zroot"].sync_token
    credentials.generate_password(token, 1, actor=SETUP)
    source, secret = events.generate_secret(tree["zroot"].registry, actor=SETUP)
    received = events.receive(source, [events.Event(id="ev-1", action="push", repository="hello-world", tag="2.0",
                                                    digest="sha256:" + "b" * 64, media_type="", actor="ci",
                                                    timestamp=None)])
    assert received.messages == 1
    return {**tree, "run": run, "token": token, "scope_map": token.scope_map, "event": AuditEvent.objects.first(),
            "event_source": source, "events_secret": secret, "received_event": ReceivedEvent.objects.get(),
            "sync_message": SyncMessage.objects.get()}


def pages(objs):
    yield url("registry_changelist")
    yield url("registry_change", objs["zroot"].registry.pk)
    for model, key in (("connectedregistry", "zroot"), ("connectedregistry", "bchild"), ("syncrun", "run"),
                       ("token", "token"), ("scopemap", "scope_map"), ("auditevent", "event"),
                       ("syncmessage", "sync_message"), ("receivedevent", "received_event"),
                       ("eventsource", "event_source")):
        yield url(f"{model}_changelist")
        yield url(f"{model}_change", objs[key].pk)
        yield url(f"{model}_history", objs[key].pk)
    yield reverse("admin:index")
    yield reverse("admin:app_list", args=["connected"])


@pytest.mark.parametrize("who", ["root", "support"])
def test_every_changelist_and_change_page_renders(request, who, everything):
    client = request.getfixturevalue(who)
    for page in pages(everything):
        response = client.get(page)
        assert response.status_code == 200, page
    ledger = client.get(url("syncrun_change", everything["run"].pk)).content.decode()
    assert "hello-world" in ledger and "sha256:" + "a" * 64 in ledger


def test_add_pages_render_for_a_superuser(root, tree):
    for model in ("registry", "connectedregistry"):
        assert root.get(url(f"{model}_add")).status_code == 200
    for model in ("token", "scopemap", "syncrun", "auditevent", "syncmessage", "receivedevent", "eventsource"):
        assert root.get(url(f"{model}_add")).status_code == 403


def test_the_changelist_shows_the_useful_columns(root, tree):
    bind(tree["zroot"], connection_state="Online")
    SyncRun.objects.create(connected_registry=tree["zroot"], status="window_closed")
    html = root.get(url("connectedregistry_changelist")).content.decode()
    for column in ("name", "registry", "parent_display", "mode_value", "connection_state", "activation_status",
                   "login_server", "last_sync_at", "sync_schedule", "window", "latest_run", "sync_token_status"):
        assert f"column-{column}" in html, column
    row = changelist_row(html, "zroot")
    for text in ("ReadWrite", "Online", "Active", "http://127.0.0.1:5002", "window closed", "enabled"):
        assert text in row, text
    child = changelist_row(html, "bchild")
    assert "0 2 * * *" in child and "PT3H" in child and "zroot" in child


# --- filters, search, queries -------------------------------------------------------------------------

def test_filters_and_search(root, tree):
    other = Registry.objects.create(name="otherregistry", login_server="http://127.0.0.1:5009",
                                    data_endpoint_enabled=True)
    operations.create_connected_registry(other, "elsewhere", ["app/frontend"], actor=SETUP)
    bind(tree["aroot"], login_server="http://edge.example:5000", connection_state="Syncing")
    changelist = url("connectedregistry_changelist")

    def names(**params):
        response = root.get(changelist, params)
        assert response.status_code == 200
        return sorted(changelist_names(response.content.decode()))

    assert names() == ["aroot", "bchild", "elsewhere", "zroot"]
    assert names(registry__id__exact=other.pk) == ["elsewhere"]
    assert names(mode__exact="ReadWrite") == ["zroot"]
    assert names(connection_state__exact="Syncing") == ["aroot"]
    assert names(activation_status__exact="Active") == ["aroot"]
    assert names(activation_status__exact="Inactive") == ["bchild", "elsewhere", "zroot"]
    assert names(q="child") == ["bchild"]
    assert names(q="app/frontend") == ["elsewhere", "zroot"]  # repositories
    assert names(q="edge.example") == ["aroot"]  # login server
    assert names(q="app/frontend", registry__id__exact=other.pk) == ["elsewhere"]

    audit = url("auditevent_changelist")
    assert root.get(audit, {"source__exact": "cli", "action__exact": "connectedRegistry.create",
                            "registry_name": "otherregistry"}).content.decode().count("elsewhere") >= 1
    html = root.get(audit, {"q": "setup"}).content.decode()
    assert "zroot" in html and "0 audit events" not in html
    assert "0 audit events" in root.get(audit, {"q": "nobody-did-this"}).content.decode()
    assert root.get(audit, {"timestamp__year": AuditEvent.objects.first().timestamp.year}).status_code == 200
    assert "zroot-sync-token" in root.get(url("token_changelist"), {"q": "zroot"}).content.decode()
    assert root.get(url("syncrun_changelist"), {"status__exact": "queued"}).status_code == 200


def make_many(prefix, count):
    """A registry with count connected registries (half of them nested), each
    with a sync token, a scope map, a run and an audit event."""
    registry = Registry.objects.create(name=f"{prefix}registry", login_server=f"http://{prefix}.example:5000")
    parent = None
    for i in range(count):
        name = f"{prefix}node{i:03d}"
        cr = ConnectedRegistry.objects.create(registry=registry, name=name, repositories=["hello-world"],
                                              parent=parent if i % 2 else None)
        parent = parent or cr
        scope_map = ScopeMap.objects.create(registry=registry, name=f"{name}-sync-scope-map")
        Token.objects.create(registry=registry, name=f"{name}-sync-token", scope_map=scope_map,
                             connected_registry=cr)
        SyncRun.objects.create(connected_registry=cr, status="succeeded")
        AuditEvent.objects.create(actor="setup", source="cli", action="connectedRegistry.create",
                                  object_type="connectedRegistry", object_name=name, registry_name=registry.name)
        source, _ = EventSource.generate(registry, cr)
        event = ReceivedEvent.objects.create(source=source, event_id=f"{name}-1", action="push",
                                             repository="hello-world", tag="1.0", messages_created=1)
        events.add_message(cr, action="push", repository="hello-world", tag="1.0", digest="", event=event,
                           origin=source.describe(), direction="down")


@pytest.mark.parametrize("model", ["connectedregistry", "token", "syncrun", "scopemap", "registry",
                                   "auditevent", "syncmessage", "receivedevent", "eventsource"])
def test_changelists_issue_a_constant_number_of_queries(root, model):
    def count_queries(rows):
        root.get(url(f"{model}_changelist"))  # warm caches (content types, session)
        with CaptureQueriesContext(connection) as queries:
            response = root.get(url(f"{model}_changelist"))
        assert response.status_code == 200
        assert f"{rows} " in response.content.decode()  # "5 connected registries" / "30 ..."
        return len(queries)

    make_many("first", 5)
    few = count_queries(5)
    make_many("second", 25)
    if model == "registry":
        return  # two registries: the other models are the ones with many rows
    assert count_queries(30) == few


# --- secrets ------------------------------------------------------------------------------------------

def test_no_password_or_hash_appears_in_any_admin_page(root, everything):
    token = everything["token"]
    clear = [credentials.generate_password(token, 1, actor=SETUP)["value"],
             credentials.generate_password(token, 2, expiration_in_days=30, actor=SETUP)["value"],
             credentials.get_settings(everything["zroot"], generate_password_slot=1, actor=SETUP)[
                 "ACR_REGISTRY_CONNECTION_STRING"].split("SyncTokenPassword=")[1].split(";")[0]]
    token.refresh_from_db()
    hashes = [token.password1_hash, token.password2_hash]
    assert all(h.startswith("pbkdf2_") for h in hashes)
    # A change through the admin: its history (LogEntry) must not carry a secret either.
    assert root.post(url("token_change", token.pk), {"status": "disabled", "_save": "Save"}).status_code == 302
    assert LogEntry.objects.get(object_id=str(token.pk)).get_change_message() == "Changed Status."

    visited = list(pages(everything)) + [
        url("token_changelist") + "?q=zroot", url("token_delete", token.pk),
        url("auditevent_changelist") + "?action__exact=token.generatePassword",
        *[url("auditevent_change", e.pk) for e in AuditEvent.objects.filter(object_type="token")],
        url("connectedregistry_delete", everything["aroot"].pk), url("registry_add"), url("connectedregistry_add"),
    ]
    for page in visited:
        html = root.get(page, follow=True).content.decode()
        for secret in ["pbkdf2_", "argon2", "bcrypt", "password1_hash", "password2_hash", *hashes, *clear]:
            assert secret not in html, (page, secret)
    token_page = root.get(url("token_change", token.pk)).content.decode()
    slots = [slot_text(token, 1), slot_text(token, 2)]
    assert slots[0].startswith("set, created ") and slots[0].endswith("never expires")
    assert re.search(r"expires \d{4}-\d\d-\d\d", slots[1])
    assert all(slot in token_page for slot in slots)
    for entry in LogEntry.objects.all():
        for secret in ["pbkdf2_", *hashes, *clear]:
            assert secret not in entry.change_message and secret not in entry.object_repr
    for event in AuditEvent.objects.all():
        assert not any(secret in str(event.changes) for secret in hashes + clear)


# --- changes through the operations -------------------------------------------------------------------

def test_an_invalid_edit_shows_the_error_and_changes_nothing(root, tree):
    cr = tree["aroot"]
    before = snapshot()
    response = root.post(cr_url("change", cr), change_data(cr, sync_schedule="0 12 * * *", sync_window="PT30M"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "errornote" in html
    field = re.search(r'<div class="form-row[^"]*field-sync_window.*?</div>\s*</div>', html, re.S).group(0)
    assert "&#x27;PT30M&#x27; is out of range: it must be at least PT1H and at most P7D." in field
    assert snapshot() == before


def test_an_operation_refusal_shows_on_the_form_and_stores_nothing(root, tree):
    """Rules only the operation knows (a descendant still syncs the repository) come back on the field."""
    zroot = tree["zroot"]
    before = snapshot()
    response = root.post(cr_url("change", zroot), change_data(zroot, repositories="app/frontend",
                                                               sync_schedule="0 3 * * *"))
    assert response.status_code == 200
    html = response.content.decode()
    field = re.search(r'field-repositories.*?</textarea>', html, re.S).group(0)
    assert "still synced by bchild below" in field
    assert snapshot() == before


def test_an_edit_goes_through_the_operations_and_is_audited_as_the_admin_user(root, tree):
    zroot = tree["zroot"]
    response = root.post(cr_url("change", zroot), change_data(
        zroot, repositories="hello-world\napp/frontend\nApp/Backend", sync_schedule="0 12 * * *",
        sync_window="PT4H", message_ttl="P7D", log_level="Debug"))
    assert response.status_code == 302
    zroot.refresh_from_db()
    assert zroot.repositories == ["hello-world", "app/frontend", "app/backend"]
    assert (zroot.sync_schedule, zroot.sync_window, zroot.message_ttl, zroot.log_level) == \
        ("0 12 * * *", "PT4H", "P7D", "Debug")
    assert "repositories/app/backend/content/write" in zroot.sync_token.scope_map.actions
    events = list(admin_events("connectedRegistry.update").order_by("pk"))
    assert [(e.actor, e.object_name) for e in events] == [("rootadmin", "zroot")] * 2
    assert events[0].changes == {"repositories": [["hello-world", "app/frontend"],
                                                  ["hello-world", "app/frontend", "app/backend"]]}
    assert events[1].changes == {"schedule": ["* * * * *", "0 12 * * *"], "syncWindow": [None, "PT4H"],
                                 "messageTtl": ["P2D", "P7D"], "logLevel": ["Information", "Debug"]}
    message = LogEntry.objects.get(object_id=str(zroot.pk)).get_change_message()
    assert message.startswith("Changed ") and "PT4H" not in message


def test_mode_and_parent_are_read_only_on_existing_connected_registries(root, tree):
    bchild, aroot = tree["bchild"], tree["aroot"]
    html = root.get(cr_url("change", bchild)).content.decode()
    for field in ("mode", "parent", "registry", "name"):
        assert f'name="{field}"' not in html, field
    assert "field-mode" in html and "field-parent_display" in html
    response = root.post(cr_url("change", bchild), change_data(bchild, mode="ReadWrite", parent=aroot.pk,
                                                               name="renamed", log_level="Warning"))
    assert response.status_code == 302
    bchild.refresh_from_db()
    assert (bchild.mode, bchild.parent_id, bchild.name, bchild.log_level) == \
        ("ReadOnly", tree["zroot"].pk, "bchild", "Warning")


def test_clearing_the_login_server_deactivates(root, tree):
    cr = bind(tree["aroot"])
    assert root.post(cr_url("change", cr), change_data(cr, login_server="")).status_code == 302
    cr.refresh_from_db()
    assert (cr.activation_status, cr.login_server) == ("Inactive", "")
    assert admin_events("connectedRegistry.deactivate").get().actor == "rootadmin"


def test_a_login_server_that_does_not_answer_is_refused_on_the_form(root, tree):
    cr = tree["aroot"]
    before = snapshot()
    response = root.post(cr_url("change", cr), change_data(cr, login_server="http://127.0.0.1:1"))
    assert response.status_code == 200
    field = re.search(r'field-login_server.*?</div>\s*</div>', response.content.decode(), re.S).group(0)
    assert "errorlist" in field
    assert snapshot() == before


@pytest.mark.registries
def test_create_and_activate_through_the_admin_with_real_registries(root, parent_registry, child_registry):
    response = root.post(url("registry_add"), {"name": "myacrregistry", "login_server": parent_registry.url,
                                               "data_endpoint_enabled": "on", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()
    registry = Registry.objects.get()
    assert admin_events("registry.create").get().actor == "rootadmin"

    form = {"registry": registry.pk, "parent": "", "name": "myconnectedregistry", "mode": "ReadOnly",
            "repositories": "hello-world acr/connected-registry", "sync_schedule": "* * * * *", "sync_window": "",
            "message_ttl": "P2D", "log_level": "Information", "login_server": child_registry.url, "_save": "Save"}
    assert root.post(url("connectedregistry_add"), form).status_code == 302
    cr = ConnectedRegistry.objects.get()
    assert (cr.activation_status, cr.login_server, cr.repositories) == \
        ("Active", child_registry.url, ["hello-world", "acr/connected-registry"])
    assert cr.runs.get().trigger == "initial"
    assert cr.sync_token.scope_map.name == "myconnectedregistry-sync-scope-map"
    assert {e.action for e in admin_events()} >= {"connectedRegistry.create", "token.create", "scopeMap.create"}

    # A child whose login server does not answer: the error is on the form, nothing is stored.
    before = snapshot()
    response = root.post(url("connectedregistry_add"), {**form, "name": "nestedchild", "parent": cr.pk,
                                                        "repositories": "hello-world",
                                                        "login_server": "http://127.0.0.1:1"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert snapshot() == before

    # Deactivate, then bind again by editing the login server (it is pinged).
    action(root, "connectedregistry", "deactivate", [cr])
    cr.refresh_from_db()
    assert root.post(cr_url("change", cr), change_data(cr, login_server=child_registry.url)).status_code == 302
    cr.refresh_from_db()
    assert cr.activation_status == "Active"
    assert admin_events("connectedRegistry.activate").get().actor == "rootadmin"

    # The registry: data endpoint off through update_registry, audited.
    response = root.post(url("registry_change", registry.pk), {"login_server": registry.login_server,
                                                              "_save": "Save"})
    assert response.status_code == 302
    registry.refresh_from_db()
    assert registry.data_endpoint_enabled is False
    assert admin_events("registry.update").get().changes == {"dataEndpointEnabled": [True, False]}


def test_a_creation_refused_by_the_operation_shows_the_reason(root, registry):
    Registry.objects.filter(pk=registry.pk).update(data_endpoint_enabled=False)
    form = {"registry": registry.pk, "parent": "", "name": "myconnectedregistry", "mode": "ReadOnly",
            "repositories": "hello-world", "sync_schedule": "* * * * *", "sync_window": "", "message_ttl": "P2D",
            "log_level": "Information", "login_server": "", "_save": "Save"}
    response = root.post(url("connectedregistry_add"), form)
    assert response.status_code == 200
    field = re.search(r'field-registry.*?</div>\s*</div>', response.content.decode(), re.S).group(0)
    assert "the data endpoint of registry" in field
    assert not ConnectedRegistry.objects.exists() and not AuditEvent.objects.exists()


# --- actions ------------------------------------------------------------------------------------------

def test_sync_now_queues_a_run_audited_as_the_admin_user_and_shows_refusals(root, tree):
    ready, unbound = bind(tree["aroot"]), tree["zroot"]
    response = action(root, "connectedregistry", "sync_now", [ready, unbound])
    html = response.content.decode()
    run = SyncRun.objects.get()
    assert (run.connected_registry, run.trigger, run.status) == (ready, "manual", "queued")
    assert f"Sync queued: aroot (run {run.pk})" in html
    assert "Zroot: cannot sync &#x27;zroot&#x27;: it has no login server" in html  # capfirst
    event = admin_events("connectedRegistry.resync").get()
    assert (event.actor, event.object_name, event.changes) == ("rootadmin", "aroot", {"run": [None, run.pk]})


def test_deactivate_action(root, tree):
    cr = bind(tree["aroot"], connection_state="Online")
    run = SyncRun.objects.create(connected_registry=cr)
    action(root, "connectedregistry", "deactivate", [cr])
    cr.refresh_from_db()
    run.refresh_from_db()
    assert (cr.activation_status, cr.connection_state, cr.login_server, run.status) == \
        ("Inactive", "Offline", "", "cancelled")
    event = admin_events("connectedRegistry.deactivate").get()
    assert event.actor == "rootadmin"
    assert event.changes["activationStatus"] == ["Active", "Inactive"]


def test_disable_and_enable_the_sync_token(root, tree):
    cr = bind(tree["aroot"])
    html = action(root, "connectedregistry", "disable_sync_token", [cr]).content.decode()
    assert "Sync token disabled: aroot." in html
    cr.refresh_from_db()
    assert cr.sync_token.status == "disabled" and cr.connection_state == "Unhealthy"
    assert any(d["code"] == "SyncTokenDisabled" for d in cr.status_details)
    html = action(root, "connectedregistry", "sync_now", [cr]).content.decode()
    assert "sync token &#x27;aroot-sync-token&#x27; is disabled" in html and not SyncRun.objects.exists()

    action(root, "connectedregistry", "enable_sync_token", [cr])
    cr.refresh_from_db()
    assert cr.sync_token.status == "enabled" and not cr.status_details
    events = admin_events("token.update").order_by("pk")
    assert [(e.actor, e.object_name, e.changes) for e in events] == [
        ("rootadmin", "aroot-sync-token", {"status": ["enabled", "disabled"]}),
        ("rootadmin", "aroot-sync-token", {"status": ["disabled", "enabled"]})]

    # The same from the token list.
    action(root, "token", "disable", [cr.sync_token])
    assert Token.objects.get(pk=cr.sync_token.pk).status == "disabled"
    assert admin_events("token.update").count() == 3


# --- deletion -----------------------------------------------------------------------------------------

def test_deleting_a_connected_registry_with_children_is_refused_with_the_reason(root, tree):
    zroot = tree["zroot"]
    before = snapshot()
    reason = "cannot be deleted while it has connected registries below it (bchild)"
    for response in (root.get(cr_url("delete", zroot), follow=True),
                     root.post(cr_url("delete", zroot), {"post": "yes"}, follow=True),
                     action(root, "connectedregistry", "delete_selected", [zroot, tree["aroot"]], post="yes")):
        assert reason in response.content.decode()
    assert snapshot() == before


def test_deleting_a_sync_token_is_refused_with_the_reason(root, tree):
    token = tree["aroot"].sync_token
    before = snapshot()
    for response in (root.post(url("token_delete", token.pk), {"post": "yes"}, follow=True),
                     action(root, "token", "delete_selected", [token], post="yes")):
        assert "cannot be deleted while it exists" in response.content.decode()
    assert snapshot() == before


def test_deletes_go_through_the_operation(root, tree):
    token_name = tree["bchild"].sync_token.name
    SyncRun.objects.create(connected_registry=tree["bchild"], status="succeeded")
    assert root.post(cr_url("delete", tree["bchild"]), {"post": "yes"}).status_code == 302
    assert not ConnectedRegistry.objects.filter(name="bchild").exists()
    assert not Token.objects.filter(name=token_name).exists()
    assert not ScopeMap.objects.filter(name="bchild-sync-scope-map").exists()
    assert {(e.action, e.actor) for e in admin_events()} == {
        ("connectedRegistry.delete", "rootadmin"), ("token.delete", "rootadmin"), ("scopeMap.delete", "rootadmin")}
    # Now the parent has no children: the bulk action deletes it (and aroot) through the operation.
    action(root, "connectedregistry", "delete_selected", [tree["zroot"], tree["aroot"]], post="yes")
    assert not ConnectedRegistry.objects.exists() and not Token.objects.exists() and not ScopeMap.objects.exists()
    assert admin_events("connectedRegistry.delete").count() == 3


def test_registries_are_not_deleted_through_the_admin(root, tree):
    registry = tree["aroot"].registry
    assert root.get(url("registry_delete", registry.pk)).status_code == 403
    assert "delete_selected" not in root.get(url("registry_changelist")).content.decode()


def test_the_links_of_a_connected_registry_lead_to_its_audit_trail_runs_and_token(root, tree):
    cr = tree["bchild"]
    SyncRun.objects.create(connected_registry=cr, status="failed", error="boom")
    SyncRun.objects.create(connected_registry=tree["aroot"], status="failed", error="other")
    page = root.get(cr_url("change", cr)).content.decode()
    links = dict((label, href.replace("&amp;", "&")) for href, label in
                 re.findall(r'<a href="(/admin/connected/[^"]+)">([^<]+)</a>', page))
    audit = root.get(links["events of bchild"]).content.decode()
    assert "1 audit event" in audit and "connectedRegistry.create" in audit  # bchild only, not its token
    runs = root.get(links["sync runs of bchild"]).content.decode()
    assert "1 sync run" in runs
    assert root.get(links["bchild-sync-token (enabled)"]).status_code == 200


def test_a_connected_registry_page_shows_its_state_history_with_the_reasons(support, tree):
    cr = bind(tree["aroot"])
    health_check.record_state(cr, "Online", [])
    health_check.record_state(cr, "Unhealthy", [{"type": "SyncToken", "code": "SyncTokenDisabled",
                                                 "description": "sync is stopped: its sync token is disabled"}])
    page = support.get(cr_url("change", cr)).content.decode()
    history = page[page.index("State history"):]
    assert history.index("Online &rarr; Unhealthy · SyncTokenDisabled: sync is stopped") \
        < history.index("Offline &rarr; Online")
    assert support.get(cr_url("change", tree["bchild"])).status_code == 200  # no history yet


# --- audit trail --------------------------------------------------------------------------------------

def test_the_audit_trail_is_read_only_for_everyone(root, tree):
    event = AuditEvent.objects.first()
    assert root.get(url("auditevent_add")).status_code == 403
    page = root.get(url("auditevent_change", event.pk)).content.decode()
    assert 'name="_save"' not in page and event.object_name in page
    assert root.post(url("auditevent_change", event.pk), {"actor": "forged"}).status_code == 403
    assert root.post(url("auditevent_delete", event.pk), {"post": "yes"}).status_code == 403
    assert "delete_selected" not in root.get(url("auditevent_changelist")).content.decode()
    action(root, "auditevent", "delete_selected", [event], post="yes")
    assert AuditEvent.objects.get(pk=event.pk).actor == "setup"


# --- support staff ------------------------------------------------------------------------------------

def test_support_staff_can_view_and_change_but_not_add_or_delete(support, tree):
    cr = tree["aroot"]
    for model in ("registry", "connectedregistry", "syncrun", "token", "scopemap", "auditevent"):
        assert support.get(url(f"{model}_changelist")).status_code == 200
        assert support.get(url(f"{model}_add")).status_code == 403
    assert support.post(cr_url("change", cr), change_data(cr, log_level="Warning")).status_code == 302
    cr.refresh_from_db()
    assert cr.log_level == "Warning"
    assert admin_events("connectedRegistry.update").get().actor == "sam"
    action(support, "connectedregistry", "disable_sync_token", [cr])
    assert admin_events("token.update").get().actor == "sam"

    before = snapshot()
    assert support.get(cr_url("delete", cr)).status_code == 403
    assert support.post(cr_url("delete", cr), {"post": "yes"}).status_code == 403
    assert support.post(url("token_delete", cr.sync_token.pk), {"post": "yes"}).status_code == 403
    changelist = support.get(url("connectedregistry_changelist")).content.decode()
    assert "delete_selected" not in changelist and "sync_now" in changelist
    action(support, "connectedregistry", "delete_selected", [cr], post="yes")
    assert snapshot() == before


def test_a_staff_user_outside_the_group_sees_nothing(client, tree):
    user = get_user_model().objects.create_user("nobody", password="s3cret-pass", is_staff=True)
    client.force_login(user)
    assert client.get(url("connectedregistry_changelist")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_migration_creates_the_support_staff_group():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("connected", "0004_run_progress")])
    assert not Group.objects.filter(name=SUPPORT_GROUP).exists()
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    group = Group.objects.get(name=SUPPORT_GROUP)
    assert sorted(p.codename for p in group.permissions.all()) == [
        "change_connectedregistry", "change_registry", "change_token", "view_auditevent",
        "view_connectedregistry", "view_eventsource", "view_receivedevent", "view_registry", "view_scopemap",
        "view_syncmessage", "view_syncrun", "view_syncruntag", "view_token"]
    # Back to before the sync messages: the group keeps only what 0005 gave it.
    executor = MigrationExecutor(connection)
    executor.migrate([("connected", "0009_sync_messages")])
    assert not Group.objects.get(name=SUPPORT_GROUP).permissions.filter(codename="view_syncmessage").exists()
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


# --- sync messages, registry events, event sources -------------------------------------------------------

def event_source_admin_names() -> str:
    """Every field, column, search and filter name the event source admin uses."""
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[EventSource]
    return " ".join(map(str, (*model_admin.list_display, *model_admin.fields, *model_admin.search_fields,
                              *model_admin.list_filter, *model_admin.readonly_fields)))


def test_no_events_secret_or_its_digest_appears_in_any_admin_page(root, everything):
    source = everything["event_source"]
    digest = source.secret_sha256
    visited = list(pages(everything)) + [
        url("eventsource_changelist") + "?q=myacrregistry", url("eventsource_delete", source.pk),
        url("receivedevent_delete", everything["received_event"].pk),
        url("syncmessage_delete", everything["sync_message"].pk),
    ]
    for page in visited:
        html = root.get(page, follow=True).content.decode()
        for secret in (digest, everything["events_secret"], "secret_sha256", "sha256 of"):
            assert secret not in html, (page, secret)
    # Not searchable either: the digest finds nothing.
    html = root.get(url("eventsource_changelist"), {"q": digest}).content.decode()
    assert "0 event sources" in html
    assert "secret" not in event_source_admin_names()


def test_the_sync_message_list_shows_the_useful_columns(root, everything):
    html = root.get(url("syncmessage_changelist")).content.decode()
    for column in ("connected_registry", "action", "subject_display", "direction", "origin", "created_at",
                   "expires_at", "status_display", "acknowledged_by"):
        assert f"column-{column}" in html, column
    row = re.search(r'<tr>(?:(?!</tr>).)*field-subject_display.*?</tr>', html, re.S).group(0)
    for text in ("zroot", "push", "hello-world:2.0", "from the parent", "registry myacrregistry", "pending"):
        assert text in row, text
    event_page = root.get(url("receivedevent_change", everything["received_event"].pk)).content.decode()
    assert "ev-1" in event_page and "sync messages of event ev-1" in event_page
    links = dict((label, href.replace("&amp;", "&")) for href, label in
                 re.findall(r'<a href="(/admin/connected/[^"]+)">([^<]+)</a>', event_page))
    assert "1 sync message" in root.get(links["sync messages of event ev-1"]).content.decode()
    source_page = root.get(url("eventsource_change", everything["event_source"].pk)).content.decode()
    assert "registry myacrregistry" in source_page and "events of registry myacrregistry" in source_page


def test_sync_message_filters_and_search(root, tree):
    now = django_now()
    bchild, aroot = tree["bchild"], tree["aroot"]

    def make(cr, repository, tag, **fields):
        return SyncMessage.objects.create(connected_registry=cr, origin="registry myacrregistry",
                                          repository=repository, tag=tag, created_at=now,
                                          expires_at=now + dt.timedelta(days=2), **{"action": "push", **fields})

    make(bchild, "hello-world", "pending1")
    make(bchild, "hello-world", "gone", action="delete")
    make(aroot, "tools/busybox", "applied", acknowledged_at=now, acknowledged_by="run 3")
    make(tree["zroot"], "app/frontend", "pushedup", direction="up")
    SyncMessage.objects.create(connected_registry=aroot, origin="x", action="push", repository="tools/busybox",
                               tag="old", created_at=now - dt.timedelta(days=5),
                               expires_at=now - dt.timedelta(days=3))
    changelist = url("syncmessage_changelist")

    def subjects(**params):
        response = root.get(changelist, params)
        assert response.status_code == 200
        return sorted(re.findall(r'class="field-subject_display">([^<]+)<', response.content.decode()))

    assert subjects(action__exact="delete") == ["hello-world:gone"]
    assert subjects(direction__exact="up") == ["app/frontend:pushedup"]
    assert subjects(acknowledged="yes") == ["tools/busybox:applied"]
    assert len(subjects(acknowledged="no")) == 4
    assert subjects(status="expired") == ["tools/busybox:old"]
    assert subjects(status="pending") == ["app/frontend:pushedup", "hello-world:gone", "hello-world:pending1"]
    assert subjects(q="busybox") == ["tools/busybox:applied", "tools/busybox:old"]
    assert subjects(q="pending1") == ["hello-world:pending1"]  # tags
    assert subjects(connected_registry__id__exact=bchild.pk) == ["hello-world:gone", "hello-world:pending1"]
    page = root.get(cr_url("change", bchild)).content.decode()
    assert f'href="{changelist}?connected_registry__id__exact={bchild.pk}">sync messages of bchild</a>' in page


@pytest.mark.parametrize("who", ["root", "support"])
def test_nobody_adds_or_changes_messages_events_or_sources(request, who, everything):
    client = request.getfixturevalue(who)
    message = everything["sync_message"]
    for model, key in (("syncmessage", "sync_message"), ("receivedevent", "received_event"),
                       ("eventsource", "event_source")):
        assert client.get(url(f"{model}_add")).status_code == 403
        page = client.get(url(f"{model}_change", everything[key].pk)).content.decode()
        assert 'name="_save"' not in page
        assert client.post(url(f"{model}_change", everything[key].pk), {"tag": "forged"}).status_code == 403
    message.refresh_from_db()
    assert message.tag == "2.0"


def test_support_staff_cannot_delete_messages_events_or_sources(support, everything):
    for model, key in (("syncmessage", "sync_message"), ("receivedevent", "received_event"),
                       ("eventsource", "event_source")):
        assert support.get(url(f"{model}_delete", everything[key].pk)).status_code == 403
        assert support.post(url(f"{model}_delete", everything[key].pk), {"post": "yes"}).status_code == 403
        assert "delete_selected" not in support.get(url(f"{model}_changelist")).content.decode()
        action(support, model, "delete_selected", [everything[key]], post="yes")
    assert SyncMessage.objects.count() == 1 and ReceivedEvent.objects.count() == 1
    assert EventSource.objects.count() == 1


def test_superusers_may_delete_and_deleting_a_source_is_audited(root, everything):
    assert root.post(url("syncmessage_delete", everything["sync_message"].pk), {"post": "yes"}).status_code == 302
    assert not SyncMessage.objects.exists()
    action(root, "receivedevent", "delete_selected", [everything["received_event"]], post="yes")
    assert not ReceivedEvent.objects.exists()
    assert root.post(url("eventsource_delete", everything["event_source"].pk), {"post": "yes"}).status_code == 302
    assert not EventSource.objects.exists()
    event = admin_events("registry.deleteEventsSecret").get()
    assert (event.actor, event.object_name, event.changes) == ("rootadmin", "myacrregistry", {})
    # A connected registry's source, from the list.
    source, _ = events.generate_secret(everything["zroot"].registry, everything["zroot"], actor=SETUP)
    action(root, "eventsource", "delete_selected", [source], post="yes")
    assert not EventSource.objects.exists()
    assert admin_events("connectedRegistry.deleteEventsSecret").get().object_name == "zroot"


def test_support_staff_see_messages_events_and_sources(support, everything):
    for model in ("syncmessage", "receivedevent", "eventsource"):
        assert support.get(url(f"{model}_changelist")).status_code == 200
    index = support.get(reverse("admin:index")).content.decode()
    assert "Sync messages" in index and "Received events" in index and "Event sources" in index
