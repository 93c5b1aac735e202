"""The OCI distribution client against real distribution 2.8 registries."""
from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from connected.registry_client import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
                                       Descriptor, DigestMismatch, Manifest, NotFound, RegistryClient,
                                       RegistryError, copy_blob)

pytestmark = pytest.mark.registries

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: RegistryClient, repo: str, data: bytes, media_type: str = OCI_LAYER) -> Descriptor:
    client.upload_blob(repo, digest(data), len(data), [data[i:i + 7000] for i in range(0, len(data), 7000)])
    return Descriptor(media_type, digest(data), len(data))


def push_image(client: RegistryClient, repo: str, tag: str | None = None, docker: bool = False,
               arch: str = "amd64", layer_bytes: int = 20_000) -> Manifest:
    """Push a config and two random layers, then the manifest (by tag, or by digest)."""
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}}).encode()
    cfg = push_blob(client, repo, config, DOCKER_CONFIG if docker else OCI_CONFIG)
    layers = [push_blob(client, repo, os.urandom(layer_bytes), DOCKER_LAYER if docker else OCI_LAYER)
              for _ in range(2)]
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    body = {"schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": cfg.media_type, "digest": cfg.digest, "size": cfg.size},
            "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in layers]}
    # Deliberately odd formatting: the digest must be over these exact bytes.
    manifest = Manifest.from_bytes(json.dumps(body, indent=3).encode() + b"\n")
    assert manifest.media_type == media_type
    client.put_manifest(repo, tag or manifest.digest, manifest)
    return manifest


def push_multi_platform(client: RegistryClient, repo: str, tag: str, docker: bool) -> tuple[Manifest, list[Manifest]]:
    children = [push_image(client, repo, docker=docker, arch=arch) for arch in ("amd64", "arm64")]
    media_type = DOCKER_MANIFEST_LIST if docker else OCI_INDEX
    body = {"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": c.media_type, "digest": c.digest, "size": len(c.content),
         "platform": {"architecture": arch, "os": "linux"}} for c, arch in zip(children, ("amd64", "arm64"))]}
    index = Manifest.from_bytes(json.dumps(body, separators=(",", ":")).encode())
    assert index.is_index()
    client.put_manifest(repo, tag, index)
    return index, children


@pytest.fixture
def registry(registry_factory):
    return registry_factory("anon")


@pytest.fixture
def rc(registry):
    with RegistryClient(registry.url, timeout=10) as client:
        yield client


def test_push_an_image_and_read_it_back_byte_exact(rc):
    rc.ping()
    pushed = push_image(rc, "team/app", "v1")
    assert rc.head_manifest("team/app", "v1") == pushed.digest
    by_tag = rc.get_manifest("team/app", "v1")
    by_digest = rc.get_manifest("team/app", pushed.digest)
    for got in (by_tag, by_digest):
        assert got.content == pushed.content
        assert got.digest == pushed.digest
        assert got.media_type == OCI_MANIFEST
    assert [b.digest for b in by_tag.blobs()] == [b.digest for b in pushed.blobs()]
    for blob in by_tag.blobs():
        with rc.open_blob("team/app", blob.digest) as stream:
            assert stream.size == blob.size
            data = b"".join(stream.iter_chunks(chunk_size=4096))
        assert digest(data) == blob.digest
    assert rc.list_tags("team/app") == ["v1"]
    assert rc.catalog() == ["team/app"]


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_multi_platform_round_trip_keeps_digests(rc, docker):
    index, children = push_multi_platform(rc, "multi", "latest", docker)
    got = rc.get_manifest("multi", "latest")
    assert got.content == index.content and got.digest == index.digest
    assert got.media_type == (DOCKER_MANIFEST_LIST if docker else OCI_INDEX)
    listed = got.child_manifests()
    assert [d.digest for d in listed] == [c.digest for c in children]
    assert [d.platform["architecture"] for d in listed] == ["amd64", "arm64"]
    for descriptor, child in zip(listed, children):
        fetched = rc.get_manifest("multi", descriptor.digest)
        assert fetched.content == child.content and fetched.media_type == descriptor.media_type
        assert len(fetched.blobs()) == 3
    assert rc.head_manifest("multi", "latest") == index.digest


def test_manifest_put_needs_the_exact_media_type(rc):
    pushed = push_image(rc, "typed")
    wrong = Manifest(media_type="application/json", digest=pushed.digest, content=pushed.content)
    with pytest.raises(RegistryError) as failure:
        rc.put_manifest("typed", "wrong", wrong)
    assert failure.value.status == 400 and failure.value.code == "MANIFEST_INVALID"
    assert rc.head_manifest("typed", "wrong") is None


def test_manifest_put_needs_its_blobs_first(rc):
    config = b"{}"
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": 2}, "layers": []}
    with pytest.raises(RegistryError) as failure:
        rc.put_manifest("missing", "v1", Manifest.from_bytes(json.dumps(body).encode()))
    assert failure.value.code == "MANIFEST_BLOB_UNKNOWN"


def test_blob_exists_lets_a_copier_skip_present_blobs(rc):
    data = os.urandom(5000)
    assert rc.blob_exists("skip", digest(data)) is False
    push_blob(rc, "skip", data)
    assert rc.blob_exists("skip", digest(data)) is True


def test_empty_blob_uploads(rc):
    push_blob(rc, "empty", b"")
    assert rc.blob_exists("empty", digest(b""))


def test_cross_repository_mount(rc):
    data = os.urandom(10_000)
    push_blob(rc, "source", data)
    assert rc.mount_blob("dest", digest(data), from_repo="source") is True
    assert rc.blob_exists("dest", digest(data))
    other = os.urandom(10_000)
    assert rc.mount_blob("dest", digest(other), from_repo="source") is False
    assert rc.blob_exists("dest", digest(other)) is False


def test_tag_and_catalog_paging(rc):
    pushed = push_image(rc, "paged", "t0")
    for i in range(1, 5):
        rc.put_manifest("paged", f"t{i}", pushed)
    for name in ("r1", "r2", "r3", "r4"):
        for blob in pushed.blobs():
            rc.mount_blob(name, blob.digest, "paged")
        rc.put_manifest(name, "v1", pushed)
    assert sorted(rc.list_tags("paged", page_size=2)) == ["t0", "t1", "t2", "t3", "t4"]
    assert rc.catalog(page_size=2) == ["paged", "r1", "r2", "r3", "r4"]


def test_unknown_things_are_not_found(rc):
    with pytest.raises(NotFound) as failure:
        rc.list_tags("nobody/here")
    assert failure.value.code == "NAME_UNKNOWN"
    push_image(rc, "known", "v1")
    with pytest.raises(NotFound):
        rc.get_manifest("known", "nope")
    assert rc.head_manifest("known", "nope") is None
    assert rc.head_manifest("nobody/here", "v1") is None
    with pytest.raises(NotFound):
        with rc.open_blob("known", digest(b"not there")):
            pass
    with pytest.raises(NotFound):
        rc.delete_manifest("known", digest(b"not there"))


def test_delete_by_digest_removes_the_tags(rc):
    pushed = push_image(rc, "gone", "v1")
    rc.put_manifest("gone", "v2", pushed)
    rc.delete_manifest("gone", pushed.digest)
    assert rc.head_manifest("gone", "v1") is None
    assert rc.head_manifest("gone", "v2") is None
    with pytest.raises(ValueError):
        rc.delete_manifest("gone", "v1")


# --- copying blobs -----------------------------------------------------------

def test_copy_blob_between_registries(parent_registry, child_registry):
    data = os.urandom(6 * 1024 * 1024 + 123)
    with RegistryClient(parent_registry.url) as source, RegistryClient(child_registry.url) as dest:
        descriptor = push_blob(source, "big", data)
        progress = []
        moved = copy_blob(source, "big", dest, "mirror/big", descriptor, on_bytes=progress.append)
        assert moved == len(data) == sum(progress)
        assert dest.blob_exists("mirror/big", descriptor.digest)
        with dest.open_blob("mirror/big", descriptor.digest) as stream:
            hasher = hashlib.sha256()
            for chunk in stream.iter_chunks():
                hasher.update(chunk)
        assert "sha256:" + hasher.hexdigest() == descriptor.digest


def test_digest_mismatch_stores_nothing(rc):
    data = os.urandom(300_000)
    claimed = digest(b"something else")
    with pytest.raises(DigestMismatch):
        rc.upload_blob("bad", claimed, len(data), [data[:100_000], data[100_000:]])
    assert rc.blob_exists("bad", claimed) is False
    assert rc.blob_exists("bad", digest(data)) is False
    # Too few or too many bytes for the size announced are refused the same way.
    with pytest.raises(DigestMismatch):
        rc.upload_blob("bad", digest(data), len(data) + 1, [data])
    with pytest.raises(DigestMismatch):
        rc.upload_blob("bad", digest(data), len(data) - 1, [data])
    assert rc.blob_exists("bad", digest(data)) is False


def test_copy_blob_with_a_wrong_descriptor_stores_nothing(parent_registry, child_registry):
    data = os.urandom(100_000)
    with RegistryClient(parent_registry.url) as source, RegistryClient(child_registry.url) as dest:
        good = push_blob(source, "src", data)
        with pytest.raises(DigestMismatch):
            copy_blob(source, "src", dest, "dst", Descriptor(good.media_type, good.digest, good.size - 10))
        assert dest.blob_exists("dst", good.digest) is False


def test_one_client_many_threads(rc):
    pushed = push_image(rc, "threads", "v1")
    errors = []

    def work():
        try:
            for _ in range(5):
                assert rc.get_manifest("threads", "v1").digest == pushed.digest
                for blob in pushed.blobs():
                    assert rc.blob_exists("threads", blob.digest)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
