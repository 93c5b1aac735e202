"""Nested connected registries: ancestors' scopes, the runtime-image warning,
deletion order, activation and the nested connection string. Registries
that must answer are real (tests/conftest.py)."""
from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from connected import credentials, operations
from connected.models import ConnectedRegistry, ScopeMap, SyncRun
from devtools.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry():
    return operations.create_registry("myacrregistry", "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                      check_login_server=False)


@pytest.fixture
def chain(registry):
    """topone (ReadWrite) <- middleone <- (created by the tests)."""
    top = operations.create_connected_registry(registry, "topone", ["hello-world", "acr/connected-registry"],
                                               mode="ReadWrite")
    middle = operations.create_connected_registry(registry, "middleone", ["hello-world"], parent=top)
    return top, middle


def repositories(name):
    return ConnectedRegistry.objects.get(name=name).repositories


def scope(name):
    return ScopeMap.objects.get(name=f"{name}-sync-scope-map").repositories()


def acr(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("acr", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_every_ancestor_gains_a_new_childs_repositories(chain, registry):
    top, middle = chain
    operations.create_connected_registry(registry, "leafone", ["app/frontend", "hello-world"], parent=middle)
    assert repositories("middleone") == scope("middleone") == ["hello-world", "app/frontend"]
    assert repositories("topone") == scope("topone") == ["hello-world", "acr/connected-registry", "app/frontend"]
    # The ancestor's own mode decides its actions.
    actions = ScopeMap.objects.get(name="topone-sync-scope-map").actions
    assert "repositories/app/frontend/content/write" in actions


def test_added_repositories_reach_the_ancestors_and_removals_stay_local(chain, registry):
    top, middle = chain
    leaf = operations.create_connected_registry(registry, "leafone", ["hello-world"], parent=middle)
    operations.change_repositories(leaf, add=["tools/busybox"])
    assert "tools/busybox" in scope("middleone") and "tools/busybox" in scope("topone")
    operations.change_repositories(leaf, remove=["tools/busybox"])
    assert scope("leafone") == ["hello-world"]
    assert "tools/busybox" in scope("middleone")  # ancestors keep what they hold
    with pytest.raises(ValidationError) as failure:
        operations.change_repositories(ConnectedRegistry.objects.get(name="middleone"), remove=["hello-world"])
    assert "still synced by leafone" in failure.value.message_dict["remove"][0]


def test_the_mode_rule(chain, registry):
    top, middle = chain
    operations.create_connected_registry(registry, "writerone", ["x"], mode="ReadWrite", parent=top)
    with pytest.raises(ValidationError) as failure:
        operations.create_connected_registry(registry, "writertwo", ["x"], mode="ReadWrite", parent=middle)
    assert failure.value.message_dict["mode"] == ["a ReadOnly parent can only have ReadOnly children."]


def test_a_warning_when_the_ancestors_do_not_sync_the_runtime_image(chain, registry):
    top, middle = chain
    out, err = acr("connected-registry", "create", "--registry", "myacrregistry", "--name", "leafone",
                   "--parent", "middleone", "--repository", "app/frontend")
    assert json.loads(out)["name"] == "leafone"
    warning, = err.splitlines()
    assert warning.startswith("WARNING: the ancestors of 'leafone' do not all sync 'acr/connected-registry' "
                              "(missing in: middleone)")
    assert warning.endswith("python manage.py acr connected-registry repo --registry myacrregistry "
                            "--name middleone --add acr/connected-registry")
    acr("connected-registry", "repo", "--registry", "myacrregistry", "--name", "middleone",
        "--add", "acr/connected-registry")
    _, err = acr("connected-registry", "create", "--registry", "myacrregistry", "--name", "leaftwo",
                 "--parent", "middleone", "--repository", "app/frontend")
    assert err == ""
    # A child that syncs it itself passes it on to every ancestor: no warning.
    lone = operations.create_connected_registry(registry, "loneone", ["x"])
    child = operations.create_connected_registry(registry, "lonechild", ["acr/connected-registry"], parent=lone)
    assert child.warnings == [] and "acr/connected-registry" in repositories("loneone")


def test_delete_is_refused_while_children_exist(chain):
    top, middle = chain
    with pytest.raises(CommandError) as failure:
        acr("connected-registry", "delete", "--registry", "myacrregistry", "--name", "topone", "--yes")
    assert str(failure.value) == ("--name: 'topone' cannot be deleted while it has connected registries below it "
                                  "(middleone): delete those first.")
    assert ConnectedRegistry.objects.count() == 2
    acr("connected-registry", "delete", "--registry", "myacrregistry", "--name", "middleone", "--yes")
    acr("connected-registry", "delete", "--registry", "myacrregistry", "--name", "topone", "--yes")
    assert ConnectedRegistry.objects.count() == ScopeMap.objects.count() == 0


def test_delete_needs_yes_without_a_terminal(chain):
    with pytest.raises(CommandError, match="add --yes"):
        call_command("acr", "connected-registry", "delete", "--registry", "myacrregistry", "--name", "middleone",
                     stdin=io.StringIO(""), stdout=io.StringIO())
    assert ConnectedRegistry.objects.count() == 2


def test_nested_connection_string(chain, registry):
    top, middle = chain
    with pytest.raises(ValidationError) as failure:
        credentials.get_settings(middle)
    assert "'topone' of 'middleone' has no login server yet" in failure.value.message_dict["name"][0]
    ConnectedRegistry.objects.filter(pk=top.pk).update(login_server="http://10.1.2.3:5000")
    middle = ConnectedRegistry.objects.get(pk=middle.pk)
    settings = credentials.get_settings(middle, "http")["ACR_REGISTRY_CONNECTION_STRING"]
    assert settings == ("ConnectedRegistryName=middleone;SyncTokenName=middleone-sync-token;"
                        "SyncTokenPassword=<use --generate-password to generate a new password>;"
                        "ParentGatewayEndpoint=10.1.2.3:5000;ParentEndpointProtocol=http")
    assert credentials.get_settings(middle)["ACR_REGISTRY_CONNECTION_STRING"].endswith("=https")


@pytest.mark.registries
def test_activation_binds_one_answering_instance(chain, registry_factory):
    top, middle = chain
    first, second = registry_factory("first"), registry_factory("second")
    with pytest.raises(ValidationError) as failure:
        operations.activate_connected_registry(top, f"http://127.0.0.1:{free_port()}")
    assert "login_server" in failure.value.message_dict
    top = operations.activate_connected_registry(ConnectedRegistry.objects.get(pk=top.pk), first.url)
    assert (top.activation_status, top.login_server) == ("Active", first.url)
    assert SyncRun.objects.get(connected_registry=top).trigger == "initial"
    with pytest.raises(ValidationError) as failure:
        operations.activate_connected_registry(top, second.url)
    assert "only one instance can be active" in failure.value.message_dict["login_server"][0]
    with pytest.raises(ValidationError) as failure:  # one instance serves one connected registry
        operations.activate_connected_registry(middle, first.url)
    assert "already the login server of connected registry 'topone'" in failure.value.message_dict["login_server"][0]

    out, _ = acr("connected-registry", "deactivate", "--registry", "myacrregistry", "--name", "topone", "--yes")
    assert "activate --registry myacrregistry --name topone --login-server URL" in out
    top = ConnectedRegistry.objects.get(pk=top.pk)
    assert (top.activation_status, top.connection_state, top.login_server) == ("Inactive", "Offline", "")
    assert SyncRun.objects.get(connected_registry=top).status == "cancelled"
    operations.activate_connected_registry(top, second.url)
    assert ConnectedRegistry.objects.get(pk=top.pk).login_server == second.url
