"""Failures a healthy distribution registry does not produce on demand:
broken connections, 5xx/429, stalls. A real registry behind a TCP proxy that
cuts a connection, or a tiny HTTP server answering what the test needs."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connected.registry_client import (Descriptor, Manifest, NotFound, RegistryClient, RegistryError, Unreachable,
                                       copy_blob, ping)
from devtools.processes import free_port
from tests.test_registry_client import push_blob


class CuttingProxy:
    """Forwards loopback TCP to upstream; the first `cut` connections are
    closed after `after` bytes came back from upstream."""

    def __init__(self, upstream_port: int, cut: int = 1, after: int = 400_000):
        self.upstream_port, self.cut, self.after = upstream_port, cut, after
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.after if self.connections <= self.cut else None
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(conn, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn, limit), daemon=True).start()

    @staticmethod
    def _pump(src, dst, limit):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[:limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self._stop = True
        self._listener.close()


def test_copy_blob_starts_again_after_a_broken_download(parent_registry, child_registry):
    data = os.urandom(3 * 1024 * 1024)
    with RegistryClient(parent_registry.url) as direct:
        descriptor = push_blob(direct, "src", data)
    proxy = CuttingProxy(parent_registry.port, cut=1, after=500_000)
    try:
        with RegistryClient(proxy.url) as source, RegistryClient(child_registry.url) as dest:
            progress = []
            assert copy_blob(source, "src", dest, "dst", descriptor, on_bytes=progress.append) == len(data)
            # Progress counts each byte once although the first attempt moved some already.
            assert sum(progress) == len(data)
            assert proxy.connections >= 2
            with dest.open_blob("dst", descriptor.digest) as blob:
                assert hashlib.sha256(b"".join(blob.iter_chunks())).hexdigest() == descriptor.digest[7:]
    finally:
        proxy.close()


def test_copy_blob_gives_up_after_its_attempts(parent_registry, child_registry):
    data = os.urandom(2 * 1024 * 1024)
    with RegistryClient(parent_registry.url) as direct:
        descriptor = push_blob(direct, "src", data)
    proxy = CuttingProxy(parent_registry.port, cut=1000, after=300_000)
    try:
        with RegistryClient(proxy.url) as source, RegistryClient(child_registry.url) as dest:
            with pytest.raises(Unreachable):
                copy_blob(source, "src", dest, "dst", descriptor)
            assert not dest.blob_exists("dst", descriptor.digest)
    finally:
        proxy.close()


class Scripted:
    """An HTTP server answering each request with the next scripted
    (status, headers, body pieces, pause between pieces); the last one repeats."""

    def __init__(self, script):
        self.script = list(script)
        self.seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                outer.seen.append((self.command, self.path))
                status, headers, pieces, pause = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(sum(len(p) for p in pieces)))
                self.end_headers()
                for piece in pieces:
                    time.sleep(pause)
                    self.wfile.write(piece)
                    self.wfile.flush()

            do_GET = do_HEAD = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(script):
        servers.append(Scripted(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def fast(client: RegistryClient) -> RegistryClient:
    client.backoff_base = 0.01
    return client


def test_5xx_and_429_are_retried(scripted):
    server = scripted([(503, {}, [b""], 0), (429, {"Retry-After": "0"}, [b""], 0), (200, {}, [b"{}"], 0)])
    with fast(RegistryClient(server.url, retries=3)) as client:
        client.ping()
    assert len(server.seen) == 3


def test_retries_are_bounded(scripted):
    server = scripted([(500, {"Content-Type": "application/json"},
                        [b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'], 0)])
    with fast(RegistryClient(server.url, retries=2)) as client:
        with pytest.raises(RegistryError) as failure:
            client.list_tags("x")
    assert failure.value.status == 500 and failure.value.code == "UNKNOWN"
    assert len(server.seen) == 3


def test_error_bodies_give_the_code(scripted):
    server = scripted([(404, {"Content-Type": "application/json"},
                        [b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'], 0)])
    with RegistryClient(server.url) as client:
        with pytest.raises(NotFound) as failure:
            client.get_manifest("x", "v1")
    assert failure.value.code == "MANIFEST_UNKNOWN"
    assert "MANIFEST_UNKNOWN" in str(failure.value)


def test_connection_refused_is_unreachable():
    with fast(RegistryClient(f"http://127.0.0.1:{free_port()}", retries=1, timeout=2)) as client:
        with pytest.raises(Unreachable):
            client.ping()
    with pytest.raises(Unreachable):
        ping(f"http://127.0.0.1:{free_port()}", timeout=1)


def test_timeout_is_per_read_not_per_transfer(scripted):
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    pieces = [data[i:i + 10_000] for i in range(0, len(data), 10_000)]
    # Ten pieces 0.15 s apart: 1.5 s in all, never 0.5 s without a byte.
    server = scripted([(200, {}, pieces, 0.15)])
    with RegistryClient(server.url, timeout=0.5) as client:
        started = time.monotonic()
        with client.open_blob("x", digest) as blob:
            assert b"".join(blob.iter_chunks()) == data
        assert time.monotonic() - started > 1.0


def test_a_stalled_registry_times_out(scripted):
    server = scripted([(200, {}, [b"x" * 10, b"y" * 10], 2.0)])
    with fast(RegistryClient(server.url, timeout=0.3, retries=0)) as client:
        with pytest.raises(Unreachable):
            with client.open_blob("x", "sha256:" + "0" * 64) as blob:
                b"".join(blob.iter_chunks())


def test_a_corrupt_blob_read_raises_digest_mismatch(scripted):
    from connected.registry_client import DigestMismatch
    server = scripted([(200, {}, [b"not what was asked for"], 0)])
    with RegistryClient(server.url) as client:
        with pytest.raises(DigestMismatch):
            with client.open_blob("x", "sha256:" + "0" * 64) as blob:
                b"".join(blob.iter_chunks())


def test_a_manifest_that_does_not_match_its_digest_is_refused(scripted):
    from connected.registry_client import DigestMismatch
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'
    server = scripted([(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, [body], 0)])
    with RegistryClient(server.url) as client:
        with pytest.raises(DigestMismatch):
            client.get_manifest("x", "sha256:" + "0" * 64)
        assert client.get_manifest("x", "v1").content == body


# --- Manifest without a registry ------------------------------------------------

def test_manifest_media_type_from_header_json_or_shape():
    assert Manifest.from_bytes(b'{"manifests":[]}').media_type == "application/vnd.oci.image.index.v1+json"
    assert Manifest.from_bytes(b'{"layers":[]}').media_type == "application/vnd.oci.image.manifest.v1+json"
    docker = b'{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}'
    assert Manifest.from_bytes(docker).media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert Manifest.from_bytes(docker, "application/vnd.oci.image.manifest.v1+json; charset=utf-8").media_type \
        == "application/vnd.oci.image.manifest.v1+json"
    assert Manifest.from_bytes(docker, "application/json").media_type == \
        "application/vnd.docker.distribution.manifest.v2+json"
    assert Manifest.from_bytes(b"{}").digest == "sha256:" + hashlib.sha256(b"{}").hexdigest()


def test_manifest_blobs_skip_foreign_layers():
    body = (b'{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:aa","size":1},"layers":['
            b'{"mediaType":"l","digest":"sha256:bb","size":2},'
            b'{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:cc",'
            b'"size":3,"urls":["https://example.invalid/layer"]}]}')
    manifest = Manifest.from_bytes(body)
    assert not manifest.is_index() and manifest.child_manifests() == []
    assert manifest.blobs() == [Descriptor("c", "sha256:aa", 1), Descriptor("l", "sha256:bb", 2)]
