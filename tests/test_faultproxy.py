"""devtools.faultproxy in front of a real registry: it forwards faithfully
(streams both ways, keeps connections alive, rewrites Location) and injects
exactly the faults it is told to."""
from __future__ import annotations

import hashlib
import os
import socket
import time

import httpx
import pytest

from connected.registry_client import RegistryClient
from devtools.faultproxy import FaultProxy
from tests.test_registry_client import push_blob, push_image

pytestmark = pytest.mark.registries


@pytest.fixture
def proxy(parent_registry):
    with FaultProxy(parent_registry.port) as p:
        yield p


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_registry_works_through_the_proxy(proxy, parent_registry):
    data = os.urandom(3 * 1024 * 1024)
    with RegistryClient(proxy.url) as client:
        descriptor = push_blob(client, "app", data)  # POST, then PUT at the (rewritten) Location
        manifest = push_image(client, "app", "v1")
        with client.open_blob("app", descriptor.digest) as blob:
            assert sha(b"".join(blob.iter_chunks())) == descriptor.digest
        assert client.head_manifest("app", "v1") == manifest.digest
        assert client.list_tags("app") == ["v1"]
    # What went through the proxy reached the registry.
    with RegistryClient(parent_registry.url) as direct:
        assert direct.blob_exists("app", descriptor.digest)
    puts = proxy.requests("PUT", r"/v2/app/blobs/uploads/")
    assert puts and all(e.status == 201 for e in puts)
    assert [e.status for e in proxy.requests("GET", descriptor.digest)] == [200]
    assert proxy.requests("GET", descriptor.digest)[0].body_bytes == len(data)


def test_location_names_the_proxy_and_connections_are_kept_alive(proxy):
    with httpx.Client(base_url=proxy.url) as client:
        start = client.post("/v2/app/blobs/uploads/")
        assert start.status_code == 202
        assert start.headers["Location"].startswith(proxy.url + "/v2/app/blobs/uploads/")
        for _ in range(5):
            assert client.get("/v2/").status_code == 200
    assert proxy.connections == 1 and len(proxy.log) == 6


def test_connection_close_is_honoured(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := s.recv(65536):  # ends because the proxy closes
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head and body == b"{}"


def test_fail_answers_the_given_status_the_given_number_of_times(proxy):
    rule = proxy.fail("GET", r"/v2/$", 500, times=2)
    proxy.fail("GET", r"/tags/list", 429, times=1, headers={"Retry-After": "7"})
    with httpx.Client(base_url=proxy.url) as client:
        statuses = [client.get("/v2/").status_code for _ in range(3)]
        limited = client.get("/v2/app/tags/list")
    assert statuses == [500, 500, 200] and rule.hits == 2
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert [(e.method, e.path, e.status, e.action) for e in proxy.log] == [
        ("GET", "/v2/", 500, "failed"), ("GET", "/v2/", 500, "failed"), ("GET", "/v2/", 200, "forwarded"),
        ("GET", "/v2/app/tags/list", 429, "failed")]


def test_fail_with_a_body_and_a_request_body_keeps_the_connection_usable(proxy):
    proxy.fail("PUT", r"/manifests/", 200, body=b"not json", headers={"Content-Type": "text/plain"})
    with httpx.Client(base_url=proxy.url) as client:
        answer = client.put("/v2/app/manifests/v1", content=b"x" * 100_000)
        assert answer.status_code == 200 and answer.content == b"not json"
        assert client.get("/v2/").status_code == 200
    assert proxy.connections == 1


def test_cut_drops_the_connection_mid_body(proxy, parent_registry):
    data = os.urandom(2 * 1024 * 1024)
    with RegistryClient(parent_registry.url) as direct:
        descriptor = push_blob(direct, "app", data)
    proxy.cut("GET", descriptor.digest, after_bytes=300_000, times=1)
    with httpx.Client(base_url=proxy.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"/v2/app/blobs/{descriptor.digest}")
        again = client.get(f"/v2/app/blobs/{descriptor.digest}")
    assert again.status_code == 200 and again.content == data
    proxy.settle()
    first, second = proxy.requests("GET", descriptor.digest)
    assert (first.action, first.body_bytes) == ("cut", 300_000)
    assert (second.action, second.body_bytes) == ("forwarded", len(data))


def test_throttle_slows_response_bodies_and_can_be_lifted(proxy, parent_registry):
    data = os.urandom(1024 * 1024)
    with RegistryClient(parent_registry.url) as direct:
        descriptor = push_blob(direct, "app", data)
    proxy.throttle(2 * 1024 * 1024)
    with httpx.Client(base_url=proxy.url, timeout=5) as client:
        started = time.monotonic()
        assert client.get(f"/v2/app/blobs/{descriptor.digest}").content == data
        # 1 MiB over a 2 MiB/s link takes at least about half a second.
        assert time.monotonic() - started >= 0.45
        proxy.throttle(None)
        assert client.get(f"/v2/app/blobs/{descriptor.digest}").content == data
    proxy.settle()
    slow, fast = proxy.requests("GET", descriptor.digest)
    assert slow.finished - slow.started >= 0.45


def test_head_answers_carry_the_length_without_a_body(proxy, parent_registry):
    data = os.urandom(50_000)
    with RegistryClient(parent_registry.url) as direct:
        descriptor = push_blob(direct, "app", data)
    with httpx.Client(base_url=proxy.url) as client:
        head = client.head(f"/v2/app/blobs/{descriptor.digest}")
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
        assert client.get("/v2/").status_code == 200  # the connection survived the HEAD
    assert proxy.connections == 1


def test_an_unreachable_upstream_is_a_502(registry_factory):
    reg = registry_factory("gone")
    with FaultProxy(reg.port) as proxy:
        reg.stop()
        with httpx.Client(base_url=proxy.url) as client:
            assert client.get("/v2/").status_code == 502
        assert proxy.log[0].action == "upstream-error"
