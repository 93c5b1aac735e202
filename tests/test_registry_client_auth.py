"""Auth flows of the registry client against real registries: htpasswd
(Basic) and token auth served by devtools.tokenserver."""
from __future__ import annotations

import base64
import logging
import os
import threading
import time

import pytest

from connected.registry_client import AuthError, NotFound, RegistryClient, copy_blob
from devtools.tokenserver import TokenServer, libtrust_key_id, write_htpasswd
from tests.test_registry_client import digest, push_blob, push_image

pytestmark = pytest.mark.registries

PASSWORD = "s3cret-pässword"


@pytest.fixture
def basic_registry(registry_factory, tmp_path):
    auth = write_htpasswd(tmp_path / "htpasswd", {"alice": PASSWORD})
    return registry_factory("basic", auth=auth)


def token_server(tmp_path, **kwargs) -> TokenServer:
    policy = {
        "alice": {"repository:*": {"pull", "push", "delete"}, "registry:catalog": {"*"}},
        "reader": {"repository:*": {"pull"}},
        "teamer": {"repository:team/*": {"pull", "push"}},
    }
    users = {"alice": PASSWORD, "reader": "r-pass", "teamer": "t-pass"}
    return TokenServer(tmp_path / "tokens", users=users, policy=policy, **kwargs)


@pytest.fixture
def tokens(tmp_path):
    with token_server(tmp_path) as server:
        yield server


@pytest.fixture
def token_registry(registry_factory, tokens):
    return registry_factory("token", auth=tokens.registry_auth())


def test_anonymous_registry_needs_no_credentials(registry_factory):
    registry = registry_factory("anon")
    with RegistryClient(registry.url) as client:
        client.ping()
        assert client.catalog() == []


def test_basic_auth(basic_registry):
    with RegistryClient(basic_registry.url, "alice", PASSWORD) as client:
        client.ping()
        pushed = push_image(client, "basic/app", "v1")
        assert client.get_manifest("basic/app", "v1").content == pushed.content
        assert client.catalog() == ["basic/app"]


@pytest.mark.parametrize("username,password", [("alice", "wrong"), ("mallory", PASSWORD), (None, None)])
def test_basic_auth_refused(basic_registry, username, password, caplog):
    caplog.set_level(logging.DEBUG)
    with RegistryClient(basic_registry.url, username, password) as client:
        with pytest.raises(AuthError) as failure:
            client.ping()
        with pytest.raises(AuthError):
            client.list_tags("basic/app")
    assert failure.value.status == 401
    assert PASSWORD not in str(failure.value) and "wrong" not in str(failure.value)
    assert PASSWORD not in caplog.text and "authorization" not in caplog.text.lower()
    assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in caplog.text


def test_bearer_token_flow(token_registry, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    with RegistryClient(token_registry.url, "alice", PASSWORD) as client:
        client.ping()
        pushed = push_image(client, "team/app", "v1")
        assert client.get_manifest("team/app", "v1").content == pushed.content
        assert client.list_tags("team/app") == ["v1"]
        assert client.catalog() == ["team/app"]
        client.delete_manifest("team/app", pushed.digest)
        assert client.head_manifest("team/app", "v1") is None
    # Tokens are cached per scope: one request to the token service per scope,
    # not one per registry call.
    asked = [scopes for user, scopes in tokens.requests]
    assert all(user == "alice" for user, _ in tokens.requests)
    assert len(asked) == len(set(asked)), asked
    assert ("repository:team/app:pull,push",) in asked
    assert ("registry:catalog:*",) in asked
    assert ("repository:team/app:delete",) in asked
    assert PASSWORD not in caplog.text and "authorization" not in caplog.text.lower()
    assert "eyJ" not in caplog.text  # no JWT


def test_bearer_wrong_password(token_registry):
    with RegistryClient(token_registry.url, "alice", "wrong") as client:
        with pytest.raises(AuthError) as failure:
            client.ping()
        assert "wrong" not in str(failure.value)
        with pytest.raises(AuthError):
            client.list_tags("team/app")


def test_bearer_scope_outside_the_policy(token_registry):
    with RegistryClient(token_registry.url, "alice", PASSWORD) as alice:
        pushed = push_image(alice, "team/app", "v1")
        push_image(alice, "other/app", "v1")
    with RegistryClient(token_registry.url, "reader", "r-pass") as reader:
        assert reader.get_manifest("team/app", "v1").digest == pushed.digest
        with pytest.raises(AuthError):
            push_blob(reader, "team/app", b"not allowed")
        with pytest.raises(AuthError):
            reader.catalog()
        with pytest.raises(AuthError):
            reader.delete_manifest("team/app", pushed.digest)
    with RegistryClient(token_registry.url, "teamer", "t-pass") as teamer:
        push_blob(teamer, "team/new", b"allowed")
        with pytest.raises(AuthError):
            teamer.list_tags("other/app")
        # A mount needs pull on the source too: team/app is readable.
        assert teamer.mount_blob("team/new", pushed.blobs()[0].digest, from_repo="team/app") is True


def test_mount_from_a_repository_the_token_may_not_read(token_registry):
    with RegistryClient(token_registry.url, "alice", PASSWORD) as alice:
        pushed = push_image(alice, "other/app", "v1")
    with RegistryClient(token_registry.url, "teamer", "t-pass") as teamer:
        assert teamer.mount_blob("team/new", pushed.blobs()[0].digest, from_repo="other/app") is False
        assert teamer.blob_exists("team/new", pushed.blobs()[0].digest) is False


def test_anonymous_client_on_a_token_registry(token_registry):
    with RegistryClient(token_registry.url) as client:
        with pytest.raises(AuthError):
            client.list_tags("team/app")


def test_a_refused_cached_token_is_renewed_once(token_registry, tokens):
    with RegistryClient(token_registry.url, "alice", PASSWORD) as client:
        push_image(client, "team/app", "v1")
        assert client.list_tags("team/app") == ["v1"]
        before = len(tokens.requests)
        # Spoil the cached pull token as an expired or revoked one would be.
        auth = client._auth
        key = ("repository:team/app:pull",)
        auth._tokens[key] = type(auth._tokens[key])("not-a-valid-token", auth._tokens[key].renew_at)
        assert client.list_tags("team/app") == ["v1"]
        assert len(tokens.requests) == before + 1


def test_short_lived_tokens_are_renewed_before_use(registry_factory, tmp_path):
    # A 2 s token has a renewal point 1 s after issue: after that the client
    # asks for a new one instead of sending one about to run out.
    with token_server(tmp_path, token_seconds=2) as server:
        registry = registry_factory("short", auth=server.registry_auth())
        with RegistryClient(registry.url, "alice", PASSWORD) as client:
            client.ping()
            client.blob_exists("team/app", digest(b"x"))
            client.blob_exists("team/app", digest(b"x"))
            n = len(server.requests)
            time.sleep(1.2)
            client.blob_exists("team/app", digest(b"x"))
            assert len(server.requests) == n + 1


def test_x5c_signed_tokens(registry_factory, tmp_path):
    with token_server(tmp_path, key_header="x5c") as server:
        registry = registry_factory("x5c", auth=server.registry_auth())
        with RegistryClient(registry.url, "alice", PASSWORD) as client:
            push_image(client, "team/app", "v1")
            assert client.list_tags("team/app") == ["v1"]


def test_copy_between_token_and_basic_registries(token_registry, basic_registry):
    data = os.urandom(3 * 1024 * 1024)
    with RegistryClient(token_registry.url, "alice", PASSWORD) as source, \
            RegistryClient(basic_registry.url, "alice", PASSWORD) as dest:
        descriptor = push_blob(source, "team/big", data)
        assert copy_blob(source, "team/big", dest, "copy/big", descriptor) == len(data)
        assert dest.blob_exists("copy/big", descriptor.digest)


def test_token_cache_is_shared_by_threads(token_registry, tokens):
    with RegistryClient(token_registry.url, "alice", PASSWORD) as client:
        pushed = push_image(client, "team/app", "v1")
        before = len(tokens.requests)
        client._auth._tokens.clear()
        errors = []
        start = threading.Barrier(8)

        def work():
            try:
                start.wait()
                for _ in range(3):
                    assert client.get_manifest("team/app", "v1").digest == pushed.digest
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(tokens.requests) == before + 1


def test_libtrust_key_id_shape(tokens):
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(tokens.cert_path.read_bytes())
    kid = libtrust_key_id(cert.public_key())
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 and g.isupper() or g.isdigit() for g in groups)


def test_not_found_under_token_auth(token_registry):
    with RegistryClient(token_registry.url, "alice", PASSWORD) as client:
        with pytest.raises(NotFound):
            client.list_tags("team/none")
