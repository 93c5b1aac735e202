"""`python manage.py acr ...` through call_command, against real registries."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connected.models import ConnectedRegistry, Registry, SyncRun
from devtools.processes import free_port
# A real `python manage.py` process with its own database (more in test_cli_subprocess.py).
from tests.test_cli_subprocess import one_error_line, portal  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.registries]


def acr(*args) -> str:
    out = io.StringIO()
    call_command("acr", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def acr_json(*args):
    return json.loads(acr(*args))


def acr_error(*args) -> str:
    """The one-line message of a user error (what `ERROR: ` prefixes on the command line)."""
    with pytest.raises(CommandError) as failure:
        acr(*args)
    message = str(failure.value)
    assert "\n" not in message
    return message


def counts():
    return Registry.objects.count(), ConnectedRegistry.objects.count(), SyncRun.objects.count()


@pytest.fixture
def registry(parent_registry):
    acr("create", "--name", "myacrregistry", "--login-server", parent_registry.url, "--data-endpoint-enabled")
    return Registry.objects.get(name="myacrregistry")


def create_cr(name, *extra, repos=("hello-world",)):
    return acr_json("connected-registry", "create", "--registry", "myacrregistry", "--name", name,
                    "--repository", *repos, *extra)


# --- registries ---------------------------------------------------------

def test_create_registry_prints_it_and_stores_it(parent_registry):
    data = acr_json("create", "--name", "myacrregistry", "--login-server", parent_registry.url + "/")
    assert data["name"] == "myacrregistry"
    assert data["loginServer"] == parent_registry.url
    assert data["dataEndpointEnabled"] is False and data["dataEndpointHostNames"] == []
    assert Registry.objects.get().login_server == parent_registry.url


@pytest.mark.parametrize("args, flag, rule", [
    (["--name", "ab", "--login-server", "{url}"], "--name", "not a valid name"),
    (["--name", "myacrregistry", "--login-server", "ftp://x"], "--login-server", "not a valid login server"),
    (["--name", "myacrregistry", "--login-server", "http://127.0.0.1:{dead}"], "--login-server", "unreachable"),
])
def test_create_registry_bad_input(parent_registry, args, flag, rule):
    args = [a.format(url=parent_registry.url, dead=free_port()) for a in args]
    message = acr_error("create", *args)
    assert message.startswith(f"{flag}: ") and rule in message
    assert Registry.objects.count() == 0


def test_create_registry_duplicate_name_case_insensitive(registry, parent_registry):
    message = acr_error("create", "--name", "MyAcrRegistry", "--login-server", parent_registry.url)
    assert message == "--name: a registry named 'myacrregistry' already exists (names are unique in any case)."
    assert Registry.objects.count() == 1


def test_update_data_endpoint_flag_forms(parent_registry):
    acr("create", "--name", "myacrregistry", "--login-server", parent_registry.url)
    assert acr_json("update", "--name", "myacrregistry", "--data-endpoint-enabled")["dataEndpointEnabled"] is True
    assert acr_json("update", "--name", "myacrregistry", "--data-endpoint-enabled", "false")[
        "dataEndpointEnabled"] is False
    data = acr_json("update", "--name", "myacrregistry", "--data-endpoint-enabled=true")
    assert data["dataEndpointEnabled"] is True
    assert data["dataEndpointHostNames"] == [parent_registry.host]
    assert Registry.objects.get().data_endpoint_enabled is True


def test_update_rejects_a_value_that_is_not_a_boolean(registry):
    message = acr_error("update", "--name", "myacrregistry", "--data-endpoint-enabled=maybe")
    assert message.startswith("--data-endpoint-enabled: 'maybe' is not true or false")
    assert acr_error("update", "--name", "nosuchregistry", "--data-endpoint-enabled") == \
        "--name: registry 'nosuchregistry' not found."


def test_show_and_list_registries(registry, parent_registry):
    assert acr_json("show", "--name", "MYACRREGISTRY")["id"] == "/registries/myacrregistry"
    assert [r["name"] for r in acr_json("list")] == ["myacrregistry"]
    lines = acr("list", "--output", "table").splitlines()
    assert lines[0].split() == ["NAME", "LOGIN", "SERVER", "DATA", "ENDPOINT", "ENABLED", "CREATION", "DATE", "(UTC)"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split()[:3] == ["myacrregistry", parent_registry.url, "true"]


# --- connected-registry create ----------------------------------------

def test_create_connected_registry_prints_the_api_json(registry, parent_registry):
    data = create_cr("myconnectedregistry", repos=("hello-world", "App/Frontend"))
    assert data["id"] == "/registries/myacrregistry/connectedRegistries/myconnectedregistry"
    assert data["name"] == "myconnectedregistry"
    assert data["mode"] == "ReadOnly"
    assert data["connectionState"] == "Offline"
    assert data["activation"] == {"status": "Inactive"}
    assert data["parent"] == {"id": None, "syncProperties": {
        "tokenId": "/registries/myacrregistry/tokens/myconnectedregistry-sync-token",
        "schedule": "* * * * *", "syncWindow": None, "messageTtl": "P2D", "lastSyncTime": None,
        "gatewayEndpoint": parent_registry.host}}
    assert data["logging"] == {"logLevel": "Information"}
    assert data["repositories"] == ["hello-world", "app/frontend"]
    assert data["statusDetails"] == [] and data["clientTokenIds"] == []
    assert data["loginServer"] is None and data["lastActivityTime"] is None
    assert data["provisioningState"] == "Succeeded"
    assert ConnectedRegistry.objects.get().repositories == ["hello-world", "app/frontend"]


def test_create_with_every_option_and_a_deployed_instance(registry, child_registry, registry_factory):
    create_cr("myconnectedregistry", "--mode", "readwrite", "--sync-schedule", "0 12 * * *",
              "--sync-message-ttl", "P3D", "--log-level", "debug")
    data = create_cr("childregistry", "--parent", "MyConnectedRegistry", "--login-server", child_registry.url,
                     "--sync-schedule", "0 0 * * *", "--sync-window", "PT4H")
    assert data["parent"]["id"] == "/registries/myacrregistry/connectedRegistries/myconnectedregistry"
    assert data["parent"]["syncProperties"]["syncWindow"] == "PT4H"
    # The parent connected registry has no login server yet: no gateway to name.
    assert data["parent"]["syncProperties"]["gatewayEndpoint"] is None
    assert data["activation"] == {"status": "Active"} and data["loginServer"] == child_registry.url
    parent = ConnectedRegistry.objects.get(name="myconnectedregistry")
    assert (parent.mode, parent.sync_window, parent.message_ttl, parent.log_level) == \
        ("ReadWrite", "PT1H", "P3D", "Debug")
    # A deployed instance gets its initial sync queued once its parent can
    # serve it; this parent has no login server yet, so nothing is queued.
    assert not SyncRun.objects.exists()
    acr("connected-registry", "activate", "--registry", "myacrregistry", "--name", "myconnectedregistry",
        "--login-server", registry_factory("middle").url)
    acr("connected-registry", "deactivate", "--registry", "myacrregistry", "--name", "childregistry", "--yes")
    acr("connected-registry", "activate", "--registry", "myacrregistry", "--name", "childregistry",
        "--login-server", child_registry.url)
    assert {(r.connected_registry.name, r.trigger) for r in SyncRun.objects.all()} == \
        {("myconnectedregistry", "initial"), ("childregistry", "initial")}


def test_repository_flag_may_repeat(registry):
    data = create_cr("myconnectedregistry", "--repository", "app/backend", repos=("hello-world",))
    assert data["repositories"] == ["hello-world", "app/backend"]


BAD_CREATE_INPUT = [
    # (registry, name, extra args, flag, part of the rule)
    ("nosuchregistry", "myconnectedregistry", ["--repository", "x"], "--registry", "not found"),
    ("myacrregistry", "existing", ["--repository", "x"], "--name", "already exists"),
    ("myacrregistry", "EXISTING", ["--repository", "x"], "--name", "already exists"),
    ("myacrregistry", "1abc", ["--repository", "x"], "--name", "not a valid name"),
    ("myacrregistry", "newregistry", [], "--repository", "at least one repository"),
    ("myacrregistry", "newregistry", ["--repository", "Bad_Name/"], "--repository", "not a valid repository"),
    ("myacrregistry", "newregistry", ["--repository", "a", "A"], "--repository", "more than once"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--mode", "Mirror"], "--mode", "not a valid mode"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--parent", "existing", "--mode", "ReadWrite"],
     "--mode", "ReadOnly parent can only have ReadOnly children"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--parent", "nosuchparent"], "--parent", "not found"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-schedule", "0 25 * * *"],
     "--sync-schedule", "hour value 25 is out of range"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-schedule", "0 12 * *"],
     "--sync-schedule", "exactly 5"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-schedule", "0 0 * * *", "--sync-window",
                                      "PT30M"], "--sync-window", "at least PT1H"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-window", "4 hours"],
     "--sync-window", "not an ISO 8601 duration"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-message-ttl", "P91D"],
     "--sync-message-ttl", "at most P90D"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--log-level", "Loud"], "--log-level", "not a valid"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--login-server", "http://127.0.0.1:{dead}"],
     "--login-server", "unreachable"),
    # An empty value is an error, not the default.
    ("", "newregistry", ["--repository", "x"], "--registry", "must not be empty"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--parent", ""], "--parent", "must not be empty"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-message-ttl", ""],
     "--sync-message-ttl", "must not be empty (leave the flag out for the default)"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--log-level", ""], "--log-level", "must not be empty"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--sync-window", ""], "--sync-window", "must not be empty"),
    ("myacrregistry", "newregistry", ["--repository", "x", "--login-server", " "], "--login-server",
     "must not be empty"),
]


@pytest.mark.parametrize("registry_name, name, extra, flag, rule", BAD_CREATE_INPUT)
def test_create_connected_registry_bad_input(registry, registry_name, name, extra, flag, rule):
    create_cr("existing")
    before = counts()
    extra = [a.format(dead=free_port()) for a in extra]
    message = acr_error("connected-registry", "create", "--registry", registry_name, "--name", name, *extra)
    assert message.startswith(f"{flag}: ") and rule in message, message
    assert counts() == before


@pytest.mark.parametrize("flag", ["--sync-schedule", "--sync-window", "--sync-message-ttl", "--log-level",
                                  "--add-client-tokens", "--remove-client-tokens"])
def test_update_refuses_an_empty_value_and_changes_nothing(registry, flag):
    create_cr("existing", "--sync-schedule", "0 12 * * *", "--sync-window", "PT4H")
    before = acr_json("connected-registry", "show", "--registry", "myacrregistry", "--name", "existing")
    message = acr_error("connected-registry", "update", "--registry", "myacrregistry", "--name", "existing",
                        flag, "")
    assert message == f"{flag}: must not be empty (leave the flag out for the current value)."
    assert acr_json("connected-registry", "show", "--registry", "myacrregistry", "--name", "existing") == before


def test_nothing_to_change_names_what_can_be_changed(registry):
    create_cr("existing")
    args = ["--registry", "myacrregistry", "--name", "existing"]
    assert acr_error("connected-registry", "update", *args).startswith("nothing to change: give --sync-schedule")
    assert acr_error("connected-registry", "repo", *args).startswith("nothing to change: give --add")
    assert acr_error("update", "--name", "myacrregistry").startswith("nothing to change: give --data-endpoint")


def test_create_needs_the_data_endpoint(registry):
    acr("update", "--name", "myacrregistry", "--data-endpoint-enabled", "false")
    message = acr_error("connected-registry", "create", "--registry", "myacrregistry", "--name", "myconnected",
                        "--repository", "x")
    assert message.startswith("--registry: the data endpoint of registry 'myacrregistry' is disabled")
    assert ConnectedRegistry.objects.count() == 0


def test_usage_errors_name_the_flag(registry):
    message = acr_error("connected-registry", "create", "--registry", "myacrregistry")
    assert "the following arguments are required: --name" in message
    assert "--help" in message
    assert acr_error("connected-registry", "show", "--registry", "myacrregistry", "--name", "x",
                     "--output", "yaml").startswith("--output: invalid choice: 'yaml'")


# --- show -----------------------------------------------------------------

def test_show_table_has_the_az_columns_and_a_dashes_row(registry, child_registry):
    create_cr("myconnectedregistry", "--login-server", child_registry.url, "--sync-schedule", "0 0 * * *",
              "--sync-window", "PT4H")
    ConnectedRegistry.objects.update(last_sync_at=dt.datetime(2026, 1, 9, 12, 0, 0, 500, tzinfo=dt.timezone.utc),
                                     connection_state="Online")
    lines = acr("connected-registry", "show", "--registry", "myacrregistry", "--name", "myconnectedregistry",
                "--output", "table").splitlines()
    assert len(lines) == 3
    header, dashes, row = lines
    for column in ("NAME", "MODE", "CONNECTION STATE", "PARENT", "LOGIN SERVER", "LAST SYNC (UTC)",
                   "SYNC SCHEDULE", "SYNC WINDOW", "SYNC STATE"):
        assert column in header
    assert header.index("MODE") < header.index("CONNECTION STATE") < header.index("SYNC STATE")
    assert set(dashes) == {"-", " "}
    # Each column's dashes start where its header does.
    assert dashes.index(" -", header.index("MODE") - 2) == header.index("MODE") - 1
    assert row.split("  ")[0] == "myconnectedregistry"
    for value in ("ReadOnly", "Online", "myacrregistry", child_registry.url, "2026-01-09 12:00:00",
                  "0 0 * * *", "PT4H", "queued"):
        assert value in row
    assert row[header.index("SYNC STATE"):].strip() == "queued"


def test_show_table_of_a_never_synced_connected_registry(registry):
    create_cr("myconnectedregistry")
    row = acr("connected-registry", "show", "-r", "myacrregistry", "-n", "myconnectedregistry",
              "-o", "table").splitlines()[2]
    assert row.split() == ["myconnectedregistry", "ReadOnly", "Offline", "myacrregistry", "-", "-",
                           "*", "*", "*", "*", "*", "-", "-"]


def test_show_json_by_default_and_queries(registry):
    create_cr("myconnectedregistry")
    show = ("connected-registry", "show", "--registry", "myacrregistry", "--name", "MYCONNECTEDREGISTRY")
    assert acr_json(*show)["name"] == "myconnectedregistry"
    assert acr(*show, "--query", "connectionState") == '"Offline"\n'
    assert acr(*show, "--query", "lastSync") == "null\n"
    ConnectedRegistry.objects.update(last_sync_at=dt.datetime(2026, 1, 9, 12, 0, tzinfo=dt.timezone.utc))
    assert acr(*show, "--query", "lastSync") == '"2026-01-09T12:00:00Z"\n'
    assert acr(*show, "--query", "parent.syncProperties.schedule") == '"* * * * *"\n'
    assert json.loads(acr(*show, "--query", "activation")) == {"status": "Inactive"}
    assert acr(*show, "--query", "connectionState", "--output", "table") == "Offline\n"
    message = acr_error(*show, "--query", "parent.nothing")
    assert message.startswith("--query: 'nothing' is not a property")


def test_show_unknown_names(registry):
    assert acr_error("connected-registry", "show", "--registry", "nosuchregistry", "--name", "abcde") == \
        "--registry: registry 'nosuchregistry' not found."
    assert acr_error("connected-registry", "show", "--registry", "myacrregistry", "--name", "abcde") == \
        "--name: connected registry 'abcde' not found in registry 'myacrregistry'."


# --- list -------------------------------------------------------------------

@pytest.fixture
def tree(registry):
    """myacrregistry <- alphaone (ReadWrite) <- betaone <- gammaone; myacrregistry <- deltaone; alphaone <- zuluone."""
    create_cr("deltaone")
    create_cr("alphaone", "--mode", "ReadWrite")
    create_cr("zuluone", "--parent", "alphaone")
    create_cr("betaone", "--parent", "alphaone")
    create_cr("gammaone", "--parent", "betaone")


def listed(*extra):
    return [cr["name"] for cr in acr_json("connected-registry", "list", "--registry", "myacrregistry", *extra)]


def test_list_in_tree_order(tree):
    assert listed() == ["alphaone", "betaone", "gammaone", "zuluone", "deltaone"]
    assert listed("--no-children") == ["alphaone", "deltaone"]
    assert listed("--parent", "alphaone") == ["betaone", "gammaone", "zuluone"]
    assert listed("--parent", "alphaone", "--no-children") == ["betaone", "zuluone"]
    assert listed("--parent", "gammaone") == []


def test_list_table_indents_children(tree):
    lines = acr("connected-registry", "list", "--registry", "myacrregistry", "--output", "table").splitlines()
    assert lines[0].split("  ")[0] == "NAME"
    assert "SYNC SCHEDULE" not in lines[0] and "SYNC WINDOW" not in lines[0]
    assert lines[0].rstrip().endswith("SYNC STATE")
    names = [line.split("  ReadOnly")[0].split("  ReadWrite")[0].rstrip() for line in lines[2:]]
    assert names == ["alphaone", "  betaone", "    gammaone", "  zuluone", "deltaone"]
    assert lines[3].split()[1:4] == ["ReadOnly", "Offline", "alphaone"]


def test_list_unknown_parent(tree):
    assert acr_error("connected-registry", "list", "--registry", "myacrregistry", "--parent", "omegaone") == \
        "--parent: connected registry 'omegaone' not found in registry 'myacrregistry'."


# --- resync ---------------------------------------------------------------

def test_resync_queues_a_manual_run(registry, child_registry):
    create_cr("myconnectedregistry", "--login-server", child_registry.url)
    out = acr("connected-registry", "resync", "--registry", "myacrregistry", "--name", "myconnectedregistry")
    run = SyncRun.objects.filter(trigger=SyncRun.Trigger.MANUAL).get()
    assert out == f"sync run {run.pk} queued for 'myconnectedregistry'\n"
    assert run.status == SyncRun.Status.QUEUED


def test_resync_without_a_deployed_instance_is_refused(registry):
    create_cr("myconnectedregistry")
    message = acr_error("connected-registry", "resync", "--registry", "myacrregistry", "--name",
                        "myconnectedregistry")
    assert message.startswith("--name: cannot sync 'myconnectedregistry': it has no login server")
    assert SyncRun.objects.count() == 0


def test_resync_wait_gives_up_after_the_timeout(registry, child_registry):
    # No worker takes the run (tests run in a transaction that never commits),
    # so it stays queued: the command says so and fails.
    create_cr("myconnectedregistry", "--login-server", child_registry.url)
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("acr", "connected-registry", "resync", "--registry", "myacrregistry", "--name",
                     "myconnectedregistry", "--wait", "--timeout", "0.3", stdout=out)
    run = SyncRun.objects.filter(trigger=SyncRun.Trigger.MANUAL).get()
    assert str(failure.value) == f"--timeout: run {run.pk} did not end within 0.3 seconds (still queued)."
    assert f"run {run.pk}: queued" in out.getvalue()


def test_resync_timeout_must_be_positive(registry):
    assert acr_error("connected-registry", "resync", "-r", "myacrregistry", "-n", "abcde", "--timeout", "0") \
        .startswith("--timeout: '0' is not a positive number of seconds")


# --- a real process -------------------------------------------------------

def test_a_real_process_prints_one_error_line_and_exits_1(portal):
    result = portal("acr connected-registry show --registry nosuchregistry --name abcde")
    assert one_error_line(result, "--registry") == "ERROR: --registry: registry 'nosuchregistry' not found."
    assert result.returncode == 1 and result.stdout == ""
