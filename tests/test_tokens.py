"""Sync tokens and scope maps: names, actions per mode, kept in step,
passwords (two slots, hashes only, shown once, expiry), disabling, deletion,
get-settings and the audit trail."""
from __future__ import annotations

import datetime as dt
import io
import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from connected import credentials, health_check, operations, syncs
from connected.audit import Actor, AuditEvent
from connected.models import ConnectedRegistry, ScopeMap, SyncRun, Token
from connected.sync.runner import execute_run

pytestmark = pytest.mark.django_db

GATEWAY = ["gateway/{n}/config/read", "gateway/{n}/config/write", "gateway/{n}/message/read",
           "gateway/{n}/message/write"]


@pytest.fixture
def registry():
    return operations.create_registry("myacrregistry", "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                      check_login_server=False)


@pytest.fixture
def cr(registry):
    return operations.create_connected_registry(registry, "myconnectedregistry", ["hello-world"])


def acr(*args, stdin=None):
    out, err = io.StringIO(), io.StringIO()
    call_command("acr", *args, stdout=out, stderr=err, stdin=stdin)
    return out.getvalue(), err.getvalue()


class Terminal(io.StringIO):
    """A stdin that is a terminal and types answer."""

    def isatty(self):
        return True


# --- created with the connected registry, actions per mode ------------------------------

def test_readonly_sync_token_and_scope_map(cr):
    token = Token.objects.get()
    assert (token.name, token.scope_map.name, token.status) == \
        ("myconnectedregistry-sync-token", "myconnectedregistry-sync-scope-map", "enabled")
    assert token.connected_registry == cr and token.passwords() == []
    assert token.scope_map.actions == ["repositories/hello-world/content/read",
                                       "repositories/hello-world/metadata/read"] + \
        [g.format(n="myconnectedregistry") for g in GATEWAY]


def test_readwrite_actions_use_lower_case_names(registry):
    operations.create_connected_registry(registry, "FactoryOne", ["App/Frontend"], mode="ReadWrite")
    scope_map = ScopeMap.objects.get()
    assert scope_map.name == "FactoryOne-sync-scope-map"
    assert scope_map.actions == [f"repositories/app/frontend/{a}" for a in (
        "content/read", "metadata/read", "content/write", "content/delete", "metadata/write")] + \
        [g.format(n="factoryone") for g in GATEWAY]


def test_scope_map_follows_added_and_removed_repositories(cr):
    operations.change_repositories(cr, add=["New-Repo", "app/backend"], remove=["hello-world"])
    scope_map = ScopeMap.objects.get()
    assert scope_map.repositories() == ["new-repo", "app/backend"]
    assert "repositories/hello-world/content/read" not in scope_map.actions
    operations.set_repositories(cr, ["app/backend", "tools/busybox"])
    assert ScopeMap.objects.get().repositories() == ["app/backend", "tools/busybox"]


# --- passwords ------------------------------------------------------------------------------

def test_two_slots_rotate_without_downtime_and_only_hashes_are_stored(cr):
    token = cr.sync_token
    first = credentials.generate_password(token, 1)["value"]
    second = credentials.generate_password(token, 2)["value"]
    token.refresh_from_db()
    assert token.verify_password(first) == 1 and token.verify_password(second) == 2
    rotated = credentials.generate_password(token, 1)["value"]
    token.refresh_from_db()
    assert token.verify_password(first) is None
    assert token.verify_password(rotated) == 1 and token.verify_password(second) == 2
    row = json.dumps(list(Token.objects.values()), default=str)
    for clear in (first, second, rotated):
        assert clear not in row
    assert token.password1_hash.startswith("pbkdf2_sha256$")


def test_an_expired_password_no_longer_verifies(cr):
    now = timezone.now()
    password = credentials.generate_password(cr.sync_token, 2, expiration_in_days=1, now=now)
    token = Token.objects.get()
    assert token.password2_expires_at == now + dt.timedelta(days=1)
    assert token.verify_password(password["value"], now=now + dt.timedelta(hours=23)) == 2
    assert token.verify_password(password["value"], now=now + dt.timedelta(days=1, seconds=1)) is None


def test_credential_generate_shows_the_value_once_and_token_show_never(cr):
    out, err = acr("token", "credential", "generate", "--registry", "myacrregistry", "--name",
                   "myconnectedregistry-sync-token", "--password2", "--expiration-in-days", "30")
    generated = json.loads(out)["passwords"][0]
    assert generated["name"] == "password2" and len(generated["value"]) == 32
    assert "shown this once" in err
    shown, _ = acr("token", "show", "--registry", "myacrregistry", "--name", "MyConnectedRegistry-Sync-Token")
    shown = json.loads(shown)
    assert generated["value"] not in json.dumps(shown)
    assert shown["credentials"]["passwords"] == [
        {"name": "password2", "creationTime": generated["creationTime"], "expiry": generated["expiry"]}]
    assert shown["scopeMapId"] == "/registries/myacrregistry/scopeMaps/myconnectedregistry-sync-scope-map"
    assert Token.objects.get().verify_password(generated["value"]) == 2


def test_credential_generate_asks_before_it_replaces_a_password(cr):
    args = ["token", "credential", "generate", "--registry", "myacrregistry", "--name",
            "myconnectedregistry-sync-token", "--password1"]
    first, _ = acr(*args)  # an empty slot: nothing is cut off, nothing to ask
    old_hash = Token.objects.get().password1_hash
    with pytest.raises(CommandError, match=r"^--yes: A new password1 of 'myconnectedregistry-sync-token' "
                                           r"replaces the current one.*add --yes"):
        acr(*args, stdin=io.StringIO(""))  # no terminal
    with pytest.raises(CommandError, match="cancelled: nothing was changed"):
        acr(*args, stdin=Terminal("n\n"))
    assert Token.objects.get().password1_hash == old_hash
    assert Token.objects.get().verify_password(json.loads(first)["passwords"][0]["value"]) == 1
    with pytest.raises(CommandError, match=r"^--expiration-in-days: 'abc' is not a whole number of days"):
        acr(*args, "--expiration-in-days", "abc", "--yes")
    assert Token.objects.get().password1_hash == old_hash
    acr(*args, "--yes")
    assert Token.objects.get().password1_hash != old_hash


def test_the_audit_trail_names_the_slot_never_the_password(cr):
    values = [credentials.generate_password(cr.sync_token, slot)["value"] for slot in (1, 2)]
    settings = credentials.get_settings(cr, generate_password_slot=1)
    values.append(re.search(r"SyncTokenPassword=([^;]+)", settings["ACR_REGISTRY_CONNECTION_STRING"])[1])
    events = AuditEvent.objects.filter(action="token.generatePassword").order_by("pk")
    assert [e.changes["slot"][1] for e in events] == ["password1", "password2", "password1"]
    everything = json.dumps(list(AuditEvent.objects.values()), default=str)
    for secret in values + [Token.objects.get().password1_hash, Token.objects.get().password2_hash]:
        assert secret not in everything
    with pytest.raises(ValueError):
        from connected.audit import record
        record(None, "token.update", "token", "x", changes={"password1": [None, "secret"]})


# --- disabling ----------------------------------------------------------------------------------

def test_a_disabled_sync_token_stops_sync_and_the_state_says_why(cr, registry):
    ConnectedRegistry.objects.filter(pk=cr.pk).update(login_server="http://127.0.0.1:5002",
                                                      activation_status="Active", connection_state="Online")
    cr.refresh_from_db()
    queued = SyncRun.objects.create(connected_registry=cr)
    running = SyncRun.objects.create(connected_registry=cr, status=SyncRun.Status.RUNNING)
    credentials.update_token_status(cr.sync_token, "disabled", actor=Actor("alice", "cli"))
    cr = ConnectedRegistry.objects.get(pk=cr.pk)
    # At once, by the health rules: still Syncing while the running run stops, with the reason.
    assert cr.connection_state == "Syncing"
    assert [d["code"] for d in cr.status_details] == ["SyncTokenDisabled"]
    assert "acr token update --registry myacrregistry --name myconnectedregistry-sync-token --status enabled" \
        in cr.status_details[0]["description"]
    assert any("sync token 'myconnectedregistry-sync-token' is disabled" in b for b in cr.sync_blockers())
    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.status == "cancelled" and running.cancel_requested
    SyncRun.objects.filter(pk=running.pk).update(status=SyncRun.Status.CANCELLED)
    assert health_check.reassess(cr) == "Unhealthy"  # answering, but sync is stopped
    assert [c.state for c in cr.state_changes.all()] == ["Unhealthy"]  # one cause, one change
    with pytest.raises(ValidationError) as refused:
        syncs.queue_sync(cr)
    assert "is disabled" in refused.value.messages[0]
    # The worker refuses too (a run queued before, or by hand).
    run = execute_run(SyncRun.objects.create(connected_registry=cr).pk)
    assert run.status == "failed" and "sync token" in run.error and "--status enabled" in run.error
    # Even if a finishing run overwrote the stored details, the output says why.
    ConnectedRegistry.objects.filter(pk=cr.pk).update(status_details=[], connection_state="Online")
    out, _ = acr("connected-registry", "show", "-r", "myacrregistry", "-n", "myconnectedregistry",
                 "--query", "statusDetails")
    assert [d["code"] for d in json.loads(out)] == ["SyncTokenDisabled"]

    credentials.update_token_status(cr.sync_token, "enabled")
    cr = ConnectedRegistry.objects.get(pk=cr.pk)
    assert cr.sync_blockers() == [] and cr.current_status_details() == []
    assert syncs.queue_sync(cr).status == "queued"
    assert [(e.actor, e.source, e.changes) for e in AuditEvent.objects.filter(action="token.update")
            .order_by("pk")] == [("alice", "cli", {"status": ["enabled", "disabled"]}),
                                 ("system", "system", {"status": ["disabled", "enabled"]})]


# --- deletion -------------------------------------------------------------------------------------

def test_a_sync_token_cannot_be_deleted_while_its_connected_registry_exists(cr):
    token = cr.sync_token
    with pytest.raises(ValidationError):
        token.delete()
    with pytest.raises(CommandError) as failure:
        acr("token", "delete", "--registry", "myacrregistry", "--name", token.name, "--yes")
    assert str(failure.value).startswith("--name: 'myconnectedregistry-sync-token' is the sync token")
    assert Token.objects.count() == 1
    operations.delete_connected_registry(cr)
    assert (Token.objects.count(), ScopeMap.objects.count(), ConnectedRegistry.objects.count()) == (0, 0, 0)
    assert [e.action for e in AuditEvent.objects.order_by("pk")][-3:] == \
        ["connectedRegistry.delete", "token.delete", "scopeMap.delete"]


# --- get-settings -----------------------------------------------------------------------------------

SETTINGS = ("connected-registry", "get-settings", "--registry", "myacrregistry", "--name", "myconnectedregistry")


def test_get_settings_without_a_password_has_the_placeholder(cr):
    out, _ = acr(*SETTINGS)
    assert json.loads(out) == {"ACR_REGISTRY_CONNECTION_STRING":
                               "ConnectedRegistryName=myconnectedregistry;"
                               "SyncTokenName=myconnectedregistry-sync-token;"
                               "SyncTokenPassword=<use --generate-password to generate a new password>;"
                               "ParentGatewayEndpoint=127.0.0.1:5001;ParentEndpointProtocol=https"}
    assert Token.objects.get().passwords() == []


def test_get_settings_forces_https_towards_the_registry(cr):
    with pytest.raises(CommandError) as failure:
        acr(*SETTINGS, "--parent-protocol", "http")
    assert str(failure.value).startswith("--parent-protocol: the parent is the top-level registry")
    assert "ParentEndpointProtocol=https" in acr(*SETTINGS, "--parent-protocol", "HTTPS")[0]


def test_replacing_a_password_needs_yes_or_a_terminal(cr):
    # An empty slot is filled without asking: nobody holds it yet.
    out, err = acr(*SETTINGS, "--generate-password", "1", stdin=io.StringIO(""))
    first = re.search(r"SyncTokenPassword=([A-Za-z0-9_-]{32});", out)[1]
    assert "Continue?" not in err
    before = list(AuditEvent.objects.values())
    with pytest.raises(CommandError) as failure:
        acr(*SETTINGS, "--generate-password", "1", stdin=io.StringIO("y\n"))
    assert str(failure.value).startswith("--yes: A new password1") and "add --yes" in str(failure.value)
    with pytest.raises(CommandError, match="cancelled"):
        acr(*SETTINGS, "--generate-password", "1", stdin=Terminal("n\n"))
    assert Token.objects.get().verify_password(first) == 1 and list(AuditEvent.objects.values()) == before

    out, err = acr(*SETTINGS, "--generate-password", "1", stdin=Terminal("y\n"))
    assert "Continue? (y/N)" in err
    password = re.search(r"SyncTokenPassword=([A-Za-z0-9_-]{32});", out)[1]
    assert Token.objects.get().verify_password(password) == 1
    assert Token.objects.get().verify_password(first) is None
    with pytest.raises(CommandError) as failure:
        acr(*SETTINGS, "--generate-password", "3", "--yes")
    assert str(failure.value) == "--generate-password: '3' is not a password slot: use 1 or 2."


def test_get_settings_warns_when_sync_could_not_connect(cr, registry):
    credentials.update_token_status(cr.sync_token, "disabled")
    operations.update_registry(registry, data_endpoint_enabled=False)
    _, err = acr(*SETTINGS)
    assert err.count("WARNING: ") == 2 and "--data-endpoint-enabled" in err and "--status enabled" in err


# --- the audit trail from the CLI and the pages ---------------------------------------------------------

def test_cli_and_web_actors_are_recorded(cr, client, django_user_model):
    acr("connected-registry", "update", "-r", "myacrregistry", "-n", "myconnectedregistry", "--sync-schedule",
        "0 12 * * *")
    event = AuditEvent.objects.filter(action="connectedRegistry.update").get()
    assert event.source == "cli" and event.actor == Actor.cli().name
    assert event.changes == {"schedule": ["* * * * *", "0 12 * * *"], "syncWindow": [None, "PT1H"]}
    assert (event.object_type, event.object_name, event.registry_name) == \
        ("connectedRegistry", "myconnectedregistry", "myacrregistry")

    ConnectedRegistry.objects.filter(pk=cr.pk).update(login_server="http://127.0.0.1:5002")
    client.force_login(django_user_model.objects.create_user("opsadmin", password="x", is_staff=True,
                                                        is_superuser=True))  # an administrator
    client.post(reverse("connected_registry_sync", args=["myacrregistry", "myconnectedregistry"]))
    event = AuditEvent.objects.filter(action="connectedRegistry.resync").get()
    assert (event.actor, event.source) == ("opsadmin", "web")
    assert event.changes == {"run": [None, SyncRun.objects.get().pk]}


# --- data made before tokens existed ----------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_connected_registries_their_sync_token():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("connected", "0002_run_cancel_requested")])
    old = executor.loader.project_state([("connected", "0002_run_cancel_requested")]).apps
    registry = old.get_model("connected", "Registry").objects.create(name="myacrregistry",
                                                                      login_server="http://127.0.0.1:5001")
    old.get_model("connected", "ConnectedRegistry").objects.create(
        registry=registry, name="OldFactory", mode="ReadWrite", repositories=["hello-world"])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    token = Token.objects.get()
    assert (token.name, token.connected_registry.name) == ("OldFactory-sync-token", "OldFactory")
    assert token.scope_map.actions == [f"repositories/hello-world/{a}" for a in (
        "content/read", "metadata/read", "content/write", "content/delete", "metadata/write")] + \
        [g.format(n="oldfactory") for g in GATEWAY]
