"""The token service without registries: the JWT exactly as distribution
2.8 needs it, the signing key on disk, decisions from scope maps, the
endpoint's refusals, the audit trail without secrets, the worker's
encrypted copy, and the client-token commands."""
from __future__ import annotations

import base64
import io
import json
import logging
import multiprocessing
import stat

import jwt as pyjwt
import pytest
from cryptography import x509
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.core.management.base import CommandError

from connected import client_tokens, credentials, operations
from connected.models import AuditEvent, ScopeMap, Token
from connected.sync.credentials import sync_credentials
from connected.tokenservice import decisions, keys, naming, registry_config, sealed
from devtools.tokenserver import libtrust_key_id as reference_kid

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def token_dir(settings, tmp_path):
    settings.PORTAL = {**settings.PORTAL, "TOKEN_SERVICE_DIR": str(tmp_path / "token-service"),
                       "PUBLIC_URL": "http://portal.example:8000"}
    return tmp_path / "token-service"


@pytest.fixture
def registry():
    return operations.create_registry("myacrregistry", "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                      check_login_server=False)


@pytest.fixture
def cr(registry):
    return operations.create_connected_registry(registry, "myconnectedregistry", ["hello-world", "app/web"])


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ask(client, service, user=None, password=None, scopes=()):
    headers = {"HTTP_AUTHORIZATION": basic(user, password)} if user else {}
    return client.get("/token/", {"service": service, "scope": list(scopes)}, **headers)


def acr(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("acr", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- the JWT ---------------------------------------------------------------------------------------

def test_the_jwt_is_what_distribution_accepts(client, registry, token_dir):
    _, passwords = client_tokens.create_client_token(registry, "reader", [["hello-world", "content/read"]])
    response = ask(client, "myacrregistry", "reader", passwords[0]["value"],
                   ["repository:hello-world:pull,push", "repository:other:pull"])
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    header = pyjwt.get_unverified_header(body["token"])
    bundle = x509.load_pem_x509_certificate((token_dir / "signing-key.pem").read_bytes().split(
        b"-----END PRIVATE KEY-----\n")[1])
    # kid: the libtrust key ID of the bundle certificate (as the test-only
    # token server, whose tokens distribution 2.8 was seen to accept, makes it).
    assert header == {"alg": "RS256", "typ": "JWT", "kid": reference_kid(bundle.public_key())}
    claims = pyjwt.decode(body["token"], bundle.public_key(), algorithms=["RS256"], audience="myacrregistry",
                          issuer="registry-portal")
    assert isinstance(claims["aud"], str)
    assert all(type(claims[k]) is int for k in ("exp", "nbf", "iat"))
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] <= claims["iat"]
    assert claims["sub"] == "reader"
    assert claims["access"] == [{"type": "repository", "name": "hello-world", "actions": ["pull"]}]


def test_kid_shape_and_the_exported_bundle_is_the_signing_certificate(tmp_path):
    key = keys.signing_key()
    groups = key.kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups) and key.kid == key.kid.upper()
    result = registry_config.export(tmp_path / "out", "myacrregistry")
    exported = x509.load_pem_x509_certificate(open(result["bundle"], "rb").read())
    assert exported == key.certificate
    assert b"PRIVATE" not in open(result["bundle"], "rb").read()
    yaml = open(result["authBlock"]).read()
    assert yaml.startswith("auth:\n  token:\n") and '"http://portal.example:8000/token/"' in yaml
    assert result["auth"]["token"] == {"realm": "http://portal.example:8000/token/", "service": "myacrregistry",
                                       "issuer": "registry-portal", "rootcertbundle": result["bundle"]}


# --- keys on disk ------------------------------------------------------------------------------------

def test_signing_key_and_worker_key_are_private_files(token_dir):
    keys.signing_key()
    sealed.seal("x")
    assert stat.S_IMODE(token_dir.stat().st_mode) == 0o700
    for name in ("signing-key.pem", "worker-secrets.key"):
        assert stat.S_IMODE((token_dir / name).stat().st_mode) == 0o600, name
    assert [p.name for p in token_dir.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def _make_key(directory, queue):
    from django.conf import settings
    settings.PORTAL = {**settings.PORTAL, "TOKEN_SERVICE_DIR": directory}
    queue.put(keys.signing_key().kid)


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    directory = str(tmp_path / "race")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_make_key, args=(directory, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    kids = {queue.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(timeout=60)
    assert len(kids) == 1


# --- decisions ------------------------------------------------------------------------------------

def test_decisions_from_scope_map_actions():
    permissions = decisions.from_scope_map([
        "repositories/hello-world/content/read", "repositories/hello-world/metadata/read",
        "repositories/app/web/content/read", "repositories/app/web/content/write",
        "repositories/app/web/content/delete", "gateway/x/config/read"])
    asked = decisions.parse_scopes(["repository:hello-world:pull,push", "repository:app/web:*",
                                    "registry:catalog:* repository:secret:pull", "bogus", "repository:app/web:pull"])
    assert decisions.decide(asked, permissions) == [
        {"type": "repository", "name": "hello-world", "actions": ["pull"]},
        {"type": "repository", "name": "app/web", "actions": ["delete", "pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert decisions.refused(asked, decisions.decide(asked, permissions)) == [
        "repository:hello-world:push", "repository:secret:pull"]
    read_only = permissions.without((decisions.PUSH, decisions.DELETE))
    assert decisions.decide(asked, read_only)[1]["actions"] == ["pull"]
    # metadata/read alone gives the catalog, not content (pull).
    meta = decisions.from_scope_map(["repositories/a/metadata/read"])
    assert decisions.decide(decisions.parse_scopes(["repository:a:pull"]), meta) == []
    assert decisions.decide(decisions.parse_scopes(["repository:anything:push"]), decisions.OWNER) == [
        {"type": "repository", "name": "anything", "actions": ["push"]}]


def test_service_names():
    assert naming.registry_service("MyAcrRegistry") == "myacrregistry"
    assert naming.connected_registry_service("MyAcr", "FactoryOne") == "myacr/factoryone"
    assert naming.parse_service("a/b") == ("a", "b") and naming.parse_service("a") == ("a", None)
    assert naming.parse_service("a/b/c") is None and naming.parse_service("") is None
    assert naming.parse_service("a b") is None


# --- who gets what, through the endpoint ------------------------------------------------------------

def test_sync_tokens_against_parent_own_and_other_services(client, registry, cr):
    child = operations.create_connected_registry(registry, "childone", ["hello-world"], parent=cr)
    password = credentials.generate_password(child.sync_token, 1)["value"]
    scopes = ["repository:hello-world:pull,push", "repository:other:delete"]
    # Its parent (the connected registry cr): its scope map (ReadOnly: pull).
    granted = ask(client, "myacrregistry/myconnectedregistry", "childone-sync-token", password, scopes).json()
    assert pyjwt.decode(granted["token"], options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "hello-world", "actions": ["pull"]}]
    # Its own connected registry: what syncing needs, on every repository.
    own = ask(client, "myacrregistry/myconnectedregistry/childone", "childone-sync-token", password, scopes)
    assert own.status_code == 401  # not a service name: answered as an unknown token
    own = ask(client, "myacrregistry/childone", "childone-sync-token", password, scopes + ["registry:catalog:*"])
    assert pyjwt.decode(own.json()["token"], options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "hello-world", "actions": ["pull", "push"]},
        {"type": "repository", "name": "other", "actions": ["delete"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    # A sibling's service: no standing.
    operations.create_connected_registry(registry, "sibling", ["hello-world"])
    refused = ask(client, "myacrregistry/sibling", "childone-sync-token", password, scopes)
    assert refused.status_code == 401 and "not valid for service" in refused.json()["errors"][0]["message"]


def test_refusals_of_the_endpoint(client, registry, cr):
    # A service nobody has is answered as an unknown token is: nobody learns which registries exist.
    for service in ("nosuchregistry", "myacrregistry"):
        unknown = ask(client, service, "nosuchtoken", "y")
        assert (unknown.status_code, unknown.json()) == \
            (401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid token name or password"}]})
        assert ask(client, service).json()["errors"][0]["message"].startswith("authentication required")
    AuditEvent.objects.all().delete()
    anonymous = ask(client, "myacrregistry")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Basic ")
    assert ask(client, "myacrregistry", "nosuchtoken", "y").status_code == 401
    # An OAuth2 POST (clients try it first, then GET) gets a JSON 405, not a CSRF page.
    posted = Client(enforce_csrf_checks=True).post("/token/?service=myacrregistry", {"grant_type": "password"})
    assert (posted.status_code, posted["Allow"]) == (405, "GET")
    assert posted.json()["errors"][0]["message"] == "method POST is not allowed here: use GET"
    token = cr.sync_token
    assert ask(client, "myacrregistry", token.name, "anything").status_code == 401  # no password yet
    reasons = [e.changes["reason"][1] for e in AuditEvent.objects.filter(action="token.refuse").order_by("pk")]
    assert reasons == ["no credentials", "unknown token", "wrong password"]


def test_audit_events_and_logs_hold_no_secret(client, registry, cr, caplog):
    caplog.set_level(logging.DEBUG)
    password = credentials.generate_password(cr.sync_token, 1)["value"]
    token = ask(client, "myacrregistry", cr.sync_token.name, password, ["repository:hello-world:pull"]).json()["token"]
    ask(client, "myacrregistry", cr.sync_token.name, "a-wrong-guess", ["repository:hello-world:pull"])
    events = list(AuditEvent.objects.filter(action__in=("token.issue", "token.refuse")).order_by("pk"))
    assert [e.action for e in events] == ["token.issue", "token.refuse"]
    assert events[0].changes["granted"] == [None, ["repository:hello-world:pull"]]
    assert events[0].changes["slot"] == [None, "password1"] and events[0].source == "api"
    stored = Token.objects.get(pk=cr.sync_token.pk)
    everything = json.dumps([e.changes for e in AuditEvent.objects.all()]) + caplog.text
    for secret in (password, "a-wrong-guess", token, stored.password1_hash, stored.worker_password_sealed,
                   base64.b64encode(f"{cr.sync_token.name}:{password}".encode()).decode()):
        assert secret not in everything


def test_the_worker_copy_is_encrypted_and_follows_the_newest_password(cr):
    token = cr.sync_token
    assert sync_credentials(cr) == (None, None)
    first = credentials.generate_password(token, 1)["value"]
    stored = Token.objects.get(pk=token.pk)
    assert first not in stored.worker_password_sealed and stored.worker_password_slot == 1
    assert sync_credentials(cr) == (token.name, first)
    second = credentials.generate_password(token, 2)["value"]
    assert sync_credentials(cr) == (token.name, second)
    # Client tokens have no worker copy.
    client_token, _ = client_tokens.create_client_token(cr.registry, "reader", [["hello-world", "content/read"]])
    assert Token.objects.get(pk=client_token.pk).worker_password_sealed == ""


# --- client tokens ----------------------------------------------------------------------------------

def test_token_create_list_attach_and_delete(cr):
    out, err = acr("token", "create", "-r", "myacrregistry", "-n", "factoryreader", "--repository", "hello-world",
                   "content/read", "metadata/read", "--repository", "app/web", "content/read")
    data = json.loads(out)
    assert [p["name"] for p in data["credentials"]["passwords"]] == ["password1", "password2"]
    assert all(len(p["value"]) >= 32 for p in data["credentials"]["passwords"]) and "shown this once" in err
    assert ScopeMap.objects.get(name="factoryreader-scope-map").actions == [
        "repositories/hello-world/content/read", "repositories/hello-world/metadata/read",
        "repositories/app/web/content/read"]
    listed = json.loads(acr("token", "list", "-r", "myacrregistry")[0])
    assert {t["name"] for t in listed} == {"factoryreader", "myconnectedregistry-sync-token"}
    assert "value" not in json.dumps(listed)
    out, _ = acr("connected-registry", "update", "-r", "myacrregistry", "-n", "myconnectedregistry",
                 "--add-client-tokens", "FactoryReader")
    assert json.loads(out)["clientTokenIds"] == ["/registries/myacrregistry/tokens/factoryreader"]
    event = AuditEvent.objects.filter(action="connectedRegistry.update").latest("pk")
    assert event.changes == {"clientTokens": [[], ["factoryreader"]]} and event.source == "cli"
    acr("token", "delete", "-r", "myacrregistry", "-n", "factoryreader", "--yes")
    assert not ScopeMap.objects.filter(name="factoryreader-scope-map").exists()
    assert list(cr.client_tokens.all()) == []
    assert AuditEvent.objects.filter(action="connectedRegistry.update").latest("pk").changes == {
        "clientTokens": [["factoryreader"], []]}


@pytest.mark.parametrize("args,message", [
    (["--repository", "hello-world"], "--repository: give 'hello-world' at least one action"),
    (["--repository", "hello-world", "content/everything"], "'content/everything' is not a repository action"),
    (["--repository", "Bad Repo", "content/read"], "not a valid repository name"),
    ([], "give either --repository"),
    (["--scope-map", "myconnectedregistry-sync-scope-map"], "--scope-map: 'myconnectedregistry-sync-scope-map' is a "
                                                             "sync scope map"),
    (["--scope-map", "nosuchmap"], "scope map 'nosuchmap' not found"),
])
def test_token_create_refusals(cr, args, message):
    with pytest.raises(CommandError) as refused:
        acr("token", "create", "-r", "myacrregistry", "-n", "mytoken", *args)
    assert message in str(refused.value)
    assert not Token.objects.filter(name="mytoken").exists()


def test_attach_rules_and_the_limit_of_50(cr, settings):
    with pytest.raises(ValidationError, match="is a sync token"):
        client_tokens.change_client_tokens(cr, add=["myconnectedregistry-sync-token"])
    with pytest.raises(ValidationError, match="not found"):
        client_tokens.change_client_tokens(cr, add=["nosuchtoken"])
    for i in range(51):
        client_tokens.create_client_token(cr.registry, f"client{i:02d}", [["hello-world", "content/read"]],
                                          passwords=False)
    client_tokens.change_client_tokens(cr, add=[f"client{i:02d}" for i in range(50)])
    with pytest.raises(ValidationError) as refused:
        client_tokens.change_client_tokens(cr, add=["client50"])
    assert "more than the limit of 50" in refused.value.messages[0]
    assert cr.client_tokens.count() == 50
    with pytest.raises(ValidationError, match="already a client token"):
        client_tokens.change_client_tokens(cr, add=["client00"], remove=["client01"])
    assert cr.client_tokens.count() == 50
    client_tokens.change_client_tokens(cr, add=["client50"], remove=["client00"])
    assert cr.client_tokens.count() == 50


def test_a_verified_password_is_remembered_briefly_and_forgotten_on_rotation(monkeypatch):
    from django.contrib.auth.hashers import make_password

    from connected import access

    calls = []
    real = access.check_password
    monkeypatch.setattr(access, "check_password", lambda clear, stored: calls.append(1) or real(clear, stored))
    stored = make_password("right-password")
    assert access.password_matches("right-password", stored) and len(calls) == 1
    assert access.password_matches("right-password", stored) and len(calls) == 1  # remembered
    assert not access.password_matches("wrong-password", stored) and len(calls) == 2  # never skipped
    rotated = make_password("right-password")
    assert access.password_matches("right-password", rotated) and len(calls) == 3  # new hash, new check
