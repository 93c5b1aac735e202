"""The portal as token service, end to end: real distribution registries
configured with `auth: token` toward the portal (pytest-django's live
server), the registry client and skopeo as clients, the sync engine as the
connected registry's sync token."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.core.cache import cache
from django.utils import timezone

from connected import access, client_tokens, credentials, health_check, operations
from connected.models import AuditEvent, ConnectedRegistry, Registry, SyncRun, Token
from connected.registry_client import AuthError, RegistryClient
from connected.sync.runner import execute_run
from connected.tokenservice import registry_config
from devtools.images import skopeo_env
from devtools.processes import free_port, stop_process, wait_for_port
from tests.test_registry_client import push_blob, push_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.registries]


@pytest.fixture
def portal_settings(settings, tmp_path, live_server):
    settings.PORTAL = {**settings.PORTAL, "TOKEN_SERVICE_DIR": str(tmp_path / "token-service"),
                       "PUBLIC_URL": live_server.url}
    return settings


@dataclass
class World:
    registry: Registry
    cr: ConnectedRegistry
    parent: object
    child: object
    pusher_password: str
    sync_password: str
    image: object
    tmp: Path

    def sync(self) -> SyncRun:
        return execute_run(SyncRun.objects.create(connected_registry=self.cr, trigger=SyncRun.Trigger.MANUAL).pk)


@pytest.fixture
def world(portal_settings, registry_factory, tmp_path) -> World:
    """A registry and a ReadOnly connected registry syncing hello-world, both
    guarded by the portal; the parent holds hello-world:1.0 and secret/app:1.0."""
    registry = operations.create_registry("myacrregistry", "http://127.0.0.1:9", data_endpoint_enabled=True,
                                          check_login_server=False)
    parent = registry_factory("parent", auth=registry_config.export(tmp_path / "parent-auth", "myacrregistry")["auth"])
    operations.update_registry(registry, login_server=parent.url)
    cr = operations.create_connected_registry(registry, "myconnectedregistry", ["hello-world"])
    child_service = registry_config.service_of(registry, cr)
    assert child_service == "myacrregistry/myconnectedregistry"
    child = registry_factory("child", auth=registry_config.export(tmp_path / "child-auth", child_service)["auth"])
    ConnectedRegistry.objects.filter(pk=cr.pk).update(login_server=child.url, activation_status="Active")
    cr.refresh_from_db()
    _, passwords = client_tokens.create_client_token(
        registry, "pusher", [["hello-world", "content/read", "content/write"],
                             ["secret/app", "content/read", "content/write"]])
    with RegistryClient(parent.url, "pusher", passwords[0]["value"]) as client:
        image = push_image(client, "hello-world", "1.0")
        push_image(client, "secret/app", "1.0")
    sync_password = credentials.generate_password(cr.sync_token, 1)["value"]
    return World(registry, cr, parent, child, passwords[0]["value"], sync_password, image, tmp_path)


def refusals(**filters):
    return AuditEvent.objects.filter(action="token.refuse", **filters)


def test_a_sync_authenticates_as_its_sync_token_and_copies_the_tag(world):
    run = world.sync()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    with RegistryClient(world.child.url, "myconnectedregistry-sync-token", world.sync_password) as child:
        assert child.get_manifest("hello-world", "1.0").digest == world.image.digest
    issued = AuditEvent.objects.filter(action="token.issue", object_name="myconnectedregistry-sync-token")
    services = {e.changes["service"][1] for e in issued}
    assert services == {"myacrregistry", "myacrregistry/myconnectedregistry"}
    assert any("repository:hello-world:pull" in e.changes["granted"][1] for e in issued
               if e.changes["service"][1] == "myacrregistry")
    # Anonymous clients get nothing from either registry.
    for url in (world.parent.url, world.child.url):
        with RegistryClient(url) as anonymous, pytest.raises(AuthError):
            anonymous.list_tags("hello-world")


def test_a_permitted_pull_succeeds_and_a_repository_outside_the_scope_map_is_refused(world):
    with RegistryClient(world.parent.url, "myconnectedregistry-sync-token", world.sync_password) as client:
        assert client.get_manifest("hello-world", "1.0").digest == world.image.digest
        assert client.list_tags("hello-world") == ["1.0"]
        with pytest.raises(AuthError):
            client.get_manifest("secret/app", "1.0")
        with pytest.raises(AuthError):  # ReadOnly scope map: content/read, no write
            push_blob(client, "hello-world", b"not allowed")
    denied = [d for e in AuditEvent.objects.filter(action="token.issue", object_name="myconnectedregistry-sync-token")
              for d in e.changes.get("denied", [None, []])[1]]
    assert "repository:secret/app:pull" in denied and "repository:hello-world:push" in denied


def test_a_push_to_a_readonly_connected_registry_is_refused(world):
    assert world.sync().status == SyncRun.Status.SUCCEEDED
    token, passwords = client_tokens.create_client_token(
        world.registry, "writer", [["hello-world", "content/read", "content/write", "content/delete"]])
    password = passwords[0]["value"]
    with RegistryClient(world.child.url, "writer", password) as client, pytest.raises(AuthError):
        client.ping()  # not attached yet: no standing at the connected registry
    client_tokens.change_client_tokens(world.cr, add=["writer"])
    with RegistryClient(world.child.url, "writer", password) as client:
        assert client.get_manifest("hello-world", "1.0").digest == world.image.digest
        with pytest.raises(AuthError):
            push_blob(client, "hello-world", b"a push to a mirror")
        with pytest.raises(AuthError):
            client.delete_manifest("hello-world", world.image.digest)
        assert client.head_manifest("hello-world", "1.0") == world.image.digest
    # The same token pushes to the registry itself, where its scope map rules.
    with RegistryClient(world.parent.url, "writer", password) as client:
        push_blob(client, "hello-world", b"a push to the parent")


def test_a_disabled_token_is_refused(world):
    credentials.update_token_status(Token.objects.get(name="pusher"), "disabled")
    with RegistryClient(world.parent.url, "pusher", world.pusher_password) as client, pytest.raises(AuthError):
        client.list_tags("hello-world")
    assert refusals(object_name="pusher").latest("pk").changes["reason"] == [None, "token disabled"]


def test_after_rotating_password1_the_old_value_is_refused_and_password2_still_works(world):
    token = Token.objects.get(name="pusher")
    password2 = credentials.generate_password(token, 2)["value"]
    new_password1 = credentials.generate_password(token, 1)["value"]
    with RegistryClient(world.parent.url, "pusher", world.pusher_password) as old, pytest.raises(AuthError):
        old.list_tags("hello-world")
    for password in (password2, new_password1):
        with RegistryClient(world.parent.url, "pusher", password) as client:
            assert client.list_tags("hello-world") == ["1.0"]


def test_an_expired_password_is_refused(world):
    Token.objects.filter(name="pusher").update(password1_expires_at=timezone.now() - dt.timedelta(minutes=1))
    with RegistryClient(world.parent.url, "pusher", world.pusher_password) as client, pytest.raises(AuthError):
        client.list_tags("hello-world")
    assert refusals(object_name="pusher").latest("pk").changes["reason"] == [None, "password1 expired"]


def test_a_sync_with_a_disabled_sync_token_fails_with_a_clear_reason(world):
    token = world.cr.sync_token
    credentials.update_token_status(token, "disabled")
    run = world.sync()
    assert run.status == SyncRun.Status.FAILED
    assert "sync token 'myconnectedregistry-sync-token' is disabled" in run.error
    cr = ConnectedRegistry.objects.get(pk=world.cr.pk)
    assert cr.connection_state == "Unhealthy"  # it answers, but sync is stopped
    assert [d["code"] for d in cr.current_status_details()] == ["SyncTokenDisabled"]
    # The registries refuse it themselves: a deployed instance holding the
    # connection string can no longer pull either.
    with RegistryClient(world.parent.url, token.name, world.sync_password) as client, pytest.raises(AuthError):
        client.list_tags("hello-world")
    assert refusals(object_name=token.name).latest("pk").changes["reason"] == [None, "token disabled"]


def test_a_refusal_by_the_token_service_stops_the_sync_and_the_state_says_why(world):
    # Past the portal's own checks (the token is enabled), the registries
    # themselves refuse an expired password.
    Token.objects.filter(pk=world.cr.sync_token.pk).update(
        password1_expires_at=timezone.now() - dt.timedelta(seconds=1))
    run = world.sync()
    assert run.status == SyncRun.Status.FAILED
    assert "the parent at" in run.error and "refused the sync" in run.error
    assert "password1 of its sync token 'myconnectedregistry-sync-token' expired" in run.error
    assert run.error.startswith(SyncRun.CREDENTIALS_REFUSED_PREFIX)
    cr = ConnectedRegistry.objects.get(pk=world.cr.pk)
    assert cr.connection_state == "Unhealthy"
    assert [d["code"] for d in cr.current_status_details()] == ["AuthenticationFailed"]
    assert "expired" in cr.status_details[-1]["description"]
    # The health check says the same (the credentials failed, not the sync) ...
    assert health_check.check(cr) == "Unhealthy"
    cr.refresh_from_db()
    assert [d["code"] for d in cr.current_status_details()] == ["AuthenticationFailed"]
    assert "password1 of its sync token" in cr.status_details[0]["description"]
    # ... until a new password lets a sync through.
    credentials.generate_password(cr.sync_token, 1)
    assert world.sync().status == SyncRun.Status.SUCCEEDED
    assert health_check.check(cr) == "Online"


def test_a_sync_token_without_a_password_is_told_to_generate_one(world):
    Token.objects.filter(pk=world.cr.sync_token.pk).update(worker_password_sealed="", worker_password_slot=None)
    run = world.sync()
    assert run.status == SyncRun.Status.FAILED and "has no password yet" in run.error
    assert "--generate-password 1" in run.error


def test_skopeo_with_a_client_token_pulls_from_the_connected_registry(world, tmp_path):
    assert world.sync().status == SyncRun.Status.SUCCEEDED
    out = io.StringIO()
    call_command("acr", "token", "create", "--registry", "myacrregistry", "--name", "factoryreader",
                 "--repository", "hello-world", "content/read", "metadata/read", stdout=out, stderr=io.StringIO())
    password = json.loads(out.getvalue())["credentials"]["passwords"][0]["value"]
    call_command("acr", "connected-registry", "update", "--registry", "myacrregistry", "--name",
                 "myconnectedregistry", "--add-client-tokens", "factoryreader", stdout=io.StringIO())

    def skopeo(*args, creds):
        return subprocess.run(["skopeo", "--insecure-policy", *args[:-1], "--src-tls-verify=false", "--src-creds",
                               creds, f"docker://{world.child.host}/hello-world:1.0", args[-1]],
                              capture_output=True, text=True, env=skopeo_env(), timeout=120)

    copied = skopeo("copy", "--all", "--preserve-digests", f"dir:{tmp_path / 'pulled'}",
                    creds=f"factoryreader:{password}")
    assert copied.returncode == 0, copied.stderr
    manifest = (tmp_path / "pulled" / "manifest.json").read_bytes()
    assert manifest == world.image.content
    refused = skopeo("copy", f"dir:{tmp_path / 'refused'}", creds="factoryreader:wrong-password")
    assert refused.returncode != 0 and "wrong-password" not in refused.stderr


def test_repeated_failures_for_one_token_are_slowed_down_without_sleeping(world, portal_settings, live_server):
    # A window long enough for three slow password checks on a loaded machine;
    # its end is then brought forward in the database instead of waited for.
    portal_settings.PORTAL = {**portal_settings.PORTAL, "TOKEN_FAILURE_LIMIT": 3,
                              "TOKEN_FAILURE_WINDOW_SECONDS": 60}
    realm = f"{live_server.url}/token/"

    def ask(password):
        started = time.monotonic()
        response = httpx.get(realm, params={"service": "myacrregistry", "scope": "repository:hello-world:pull"},
                             auth=("pusher", password), timeout=10)
        return response, time.monotonic() - started

    assert [ask("wrong")[0].status_code for _ in range(3)] == [401, 401, 401]
    access._VERIFIED.clear()  # the right password, not verified lately, waits out the window too
    slowed, took = ask(world.pusher_password)
    assert slowed.status_code == 429 and 1 <= int(slowed.headers["Retry-After"]) <= 60
    assert took < int(slowed.headers["Retry-After"])  # answered at once: nothing sleeps out the window
    assert refusals(object_name="pusher").latest("pk").changes["reason"] == [None, "too many failures"]
    cache.clear()  # the window's end, without waiting for it
    assert ask(world.pusher_password)[0].status_code == 200


def test_failures_from_one_address_do_not_lock_out_another(world, portal_settings):
    """A stranger guessing a sync token's password cannot stop its worker's syncs."""
    import base64

    from connected.tokenservice.authenticate import decide, find_target

    portal_settings.PORTAL = {**portal_settings.PORTAL, "TOKEN_FAILURE_LIMIT": 3}
    target = find_target("myacrregistry")

    def basic(password):
        return "Basic " + base64.b64encode(f"pusher:{password}".encode()).decode()

    for _ in range(3):
        assert decide(target, basic("wrong"), ["repository:hello-world:pull"], client="203.0.113.9").status == 401
    access._VERIFIED.clear()  # not verified lately: the right password waits there too
    assert decide(target, basic(world.pusher_password), ["repository:hello-world:pull"],
                  client="203.0.113.9").status == 429
    assert decide(target, basic(world.pusher_password), ["repository:hello-world:pull"],
                  client="10.0.0.7").status == 200


def test_a_password_verified_lately_passes_while_its_address_is_slowed_down(world, portal_settings):
    """Guessers behind the worker's own address (one host, one proxy) cannot stop
    its syncs: a password this process verified within minutes passes, with no
    slow hash; anything else from there is 429 until the window ends."""
    import base64

    from connected.tokenservice.authenticate import decide, find_target

    portal_settings.PORTAL = {**portal_settings.PORTAL, "TOKEN_FAILURE_LIMIT": 3}
    target = find_target("myacrregistry")

    def ask(password):
        header = "Basic " + base64.b64encode(f"pusher:{password}".encode()).decode()
        return decide(target, header, ["repository:hello-world:pull"], client="127.0.0.1").status

    assert ask(world.pusher_password) == 200  # verified: remembered by this process
    assert [ask("wrong") for _ in range(3)] == [401, 401, 401]
    assert ask("wrong") == 429 and ask("another guess") == 429
    assert ask(world.pusher_password) == 200
    assert ask("wrong") == 429  # its pass did not reset the others' count
    credentials.generate_password(Token.objects.get(name="pusher"), 1)  # a new password forgets the old
    assert ask(world.pusher_password) == 429


@pytest.mark.parametrize("meta, trusted, expected", [
    ({"REMOTE_ADDR": "10.0.0.7"}, "", "10.0.0.7"),
    ({"REMOTE_ADDR": "10.0.0.7", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "", "10.0.0.7"),  # untrusted: ignored
    ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "10.0.0.1", "203.0.113.9"),
    ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.9, 10.0.0.2"}, "10.0.0.1,10.0.0.2",
     "203.0.113.9"),  # the nearest hop that is not a proxy: earlier ones are the client's own say
    ({"REMOTE_ADDR": "10.0.0.1"}, "10.0.0.1", "10.0.0.1"),
])
def test_the_client_address_behind_trusted_proxies(portal_settings, meta, trusted, expected):
    from connected.tokenservice.authenticate import client_address

    portal_settings.PORTAL = {**portal_settings.PORTAL,
                              "TRUSTED_PROXIES": frozenset(a for a in trusted.split(",") if a)}
    assert client_address(meta) == expected


def test_a_connected_registry_started_from_get_settings_config_uses_the_portal(world, tmp_path):
    port = free_port()
    out = io.StringIO()
    call_command("acr", "connected-registry", "get-settings", "--registry", "myacrregistry", "--name",
                 "myconnectedregistry", "--generate-password", "2", "--yes", "--registry-config",
                 str(tmp_path / "deploy"), "--http-addr", f"127.0.0.1:{port}", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    password2 = result["ACR_REGISTRY_CONNECTION_STRING"].split("SyncTokenPassword=")[1].split(";")[0]
    config = json.loads(Path(result["registryConfig"]).read_text())
    assert config["auth"]["token"]["service"] == "myacrregistry/myconnectedregistry"
    assert config["notifications"]["endpoints"][0]["url"].endswith("/events/")
    assert oct(os.stat(result["registryConfig"]).st_mode & 0o777) == "0o600"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(result["start"].split(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_port(port, proc=proc)
        ConnectedRegistry.objects.filter(pk=world.cr.pk).update(login_server=f"http://127.0.0.1:{port}")
        world.cr.refresh_from_db()
        run = world.sync()  # the worker now presents password2, the newest
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        with RegistryClient(f"http://127.0.0.1:{port}", "myconnectedregistry-sync-token", password2) as client:
            assert client.get_manifest("hello-world", "1.0").digest == world.image.digest
        with RegistryClient(f"http://127.0.0.1:{port}") as anonymous, pytest.raises(AuthError):
            anonymous.list_tags("hello-world")
    finally:
        stop_process(proc)
