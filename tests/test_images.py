"""devtools.images: real images, pushed with skopeo to a real registry, read back
by skopeo and by plain HTTP."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile

import httpx
import pytest

from devtools import images
from devtools.images import ImageSpec, MiB

ACCEPT = ", ".join(images.ALL_MANIFEST_TYPES)


def _manifest(reg, repo, ref):
    r = httpx.get(f"{reg.url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}, timeout=30)
    r.raise_for_status()
    return r


def _blob(reg, repo, digest) -> bytes:
    r = httpx.get(f"{reg.url}/v2/{repo}/blobs/{digest}", timeout=30, follow_redirects=True)
    r.raise_for_status()
    assert images.sha256_digest(r.content) == digest
    return r.content


def _skopeo_inspect(reg, repo, tag) -> dict:
    out = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", "--no-creds",
                          f"docker://{reg.host}/{repo}:{tag}"],
                         check=True, capture_output=True, env=images.skopeo_env(), timeout=120)
    return json.loads(out.stdout)


@pytest.fixture
def image_cache(tmp_path_factory):
    # A cache of its own per session run keeps the test independent of old builds.
    return tmp_path_factory.mktemp("image-cache")


@pytest.mark.registries
def test_single_platform_image_round_trips(parent_registry, image_cache):
    [pushed] = images.populate(parent_registry.host, [ImageSpec("test/hello", "1.0")], cache_dir=image_cache)
    raw = images.inspect_raw(parent_registry.host, "test/hello", "1.0")
    assert images.sha256_digest(raw) == pushed.digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == images.OCI_MANIFEST
    assert len(manifest["layers"]) == 2
    # The registry itself reports the same digest.
    head = httpx.head(f"{parent_registry.url}/v2/test/hello/manifests/1.0", headers={"Accept": ACCEPT})
    assert head.headers["Docker-Content-Digest"] == pushed.digest
    info = _skopeo_inspect(parent_registry, "test/hello", "1.0")
    assert info["Digest"] == pushed.digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert len(info["Layers"]) == 2


@pytest.mark.registries
def test_index_has_two_platforms(parent_registry, image_cache):
    spec = ImageSpec("test/multi", "2.0", platforms=("linux/amd64", "linux/arm64"))
    [pushed] = images.populate(parent_registry.host, [spec], cache_dir=image_cache)
    raw = images.inspect_raw(parent_registry.host, "test/multi", "2.0")
    assert images.sha256_digest(raw) == pushed.digest
    index = json.loads(raw)
    assert index["mediaType"] == images.OCI_INDEX
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    digests = {m["digest"] for m in index["manifests"]}
    assert len(digests) == 2
    for m in index["manifests"]:
        child = images.inspect_raw(parent_registry.host, "test/multi", m["digest"])
        assert images.sha256_digest(child) == m["digest"]
        config = json.loads(_blob(parent_registry, "test/multi", json.loads(child)["config"]["digest"]))
        assert config["architecture"] == m["platform"]["architecture"]
    # skopeo picks the amd64 instance of the index.
    assert _skopeo_inspect(parent_registry, "test/multi", "2.0")["Architecture"] == "amd64"


@pytest.mark.registries
def test_docker_media_types(parent_registry, image_cache):
    specs = [ImageSpec("test/docker", "single", docker_media_types=True),
             ImageSpec("test/docker", "list", docker_media_types=True,
                       platforms=("linux/amd64", "linux/arm64"))]
    pushed = images.populate(parent_registry.host, specs, cache_dir=image_cache)
    single = json.loads(images.inspect_raw(parent_registry.host, "test/docker", "single"))
    assert single["mediaType"] == images.DOCKER_MANIFEST
    assert single["config"]["mediaType"] == images.DOCKER_CONFIG
    assert {layer["mediaType"] for layer in single["layers"]} == {images.DOCKER_LAYER_GZIP}
    lst = images.inspect_raw(parent_registry.host, "test/docker", "list")
    assert json.loads(lst)["mediaType"] == images.DOCKER_LIST
    assert images.sha256_digest(lst) == pushed[1].digest
    assert _manifest(parent_registry, "test/docker", "list").headers["Content-Type"] == images.DOCKER_LIST


@pytest.mark.registries
def test_root_fs_is_busybox_and_runs(parent_registry, image_cache, tmp_path):
    [pushed] = images.populate(parent_registry.host, [ImageSpec("test/rootfs", "1", payload_size=1000)],
                               cache_dir=image_cache)
    manifest = _manifest(parent_registry, "test/rootfs", "1").json()
    base = gzip.decompress(_blob(parent_registry, "test/rootfs", manifest["layers"][0]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(base)) as tar:
        busybox = tar.getmember("bin/busybox")
        assert busybox.isfile() and busybox.size == os.path.getsize(images.BUSYBOX)
        sh = tar.getmember("bin/sh")
        assert sh.issym() and sh.linkname == "/bin/busybox"
        (tmp_path / "busybox").write_bytes(tar.extractfile(busybox).read())
    (tmp_path / "busybox").chmod(0o755)
    out = subprocess.run([str(tmp_path / "busybox"), "sh", "-c", "echo ran-$((6*7))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ran-42"
    own = gzip.decompress(_blob(parent_registry, "test/rootfs", manifest["layers"][1]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(own)) as tar:
        assert tar.extractfile("etc/portal-image").read() == b"test/rootfs:1\n"
        assert tar.getmember("opt/portal/payload.bin").size == 1000
    # The config's diff_ids match the uncompressed layers.
    config = json.loads(_blob(parent_registry, "test/rootfs", manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [images.sha256_digest(base), images.sha256_digest(own)]


@pytest.mark.registries
def test_base_layer_is_shared_and_mountable(parent_registry, image_cache):
    specs = [ImageSpec("test/a", "1"), ImageSpec("test/b", "1", payload_size=10)]
    pushed = images.populate(parent_registry.host, specs, cache_dir=image_cache)
    assert pushed[0].digest != pushed[1].digest
    layers_a = _manifest(parent_registry, "test/a", "1").json()["layers"]
    layers_b = _manifest(parent_registry, "test/b", "1").json()["layers"]
    assert layers_a[0]["digest"] == layers_b[0]["digest"]
    assert layers_a[1]["digest"] != layers_b[1]["digest"]
    r = httpx.post(f"{parent_registry.url}/v2/test/c/blobs/uploads/",
                   params={"mount": layers_a[0]["digest"], "from": "test/a"})
    assert r.status_code == 201


def test_build_is_cached_and_deterministic(image_cache, tmp_path):
    spec = ImageSpec("test/cache", "1", payload_size=4096)
    first = images.build_spec(spec, image_cache)
    assert images.build_spec(spec, image_cache) == first
    # Built again elsewhere: the same bytes, so the same digest.
    images.build_image_layout(tmp_path / "again", "1", spec.files())
    assert images.layout_digest(tmp_path / "again", "1") == images.layout_digest(first, "1")
    # A different spec is a different layout.
    assert images.build_spec(ImageSpec("test/cache", "2"), image_cache) != first


def test_layout_holds_several_tags(tmp_path):
    d1 = images.build_image_layout(tmp_path / "l", "a", {"/x": b"1"})
    d2 = images.build_image_layout(tmp_path / "l", "b", {"/x": b"2"})
    assert d1 != d2
    assert images.layout_digest(tmp_path / "l", "a") == d1
    assert images.layout_digest(tmp_path / "l", "b") == d2


def test_datasets():
    demo = images.demo_dataset()
    repos = {s.repo for s in demo}
    assert {"hello-world", "app/frontend", "app/backend", "tools/busybox"} <= repos
    assert any(len(s.platforms) == 2 for s in demo)
    assert any(s.docker_media_types for s in demo)
    bench = images.benchmark_dataset()
    assert len(bench) == 100 and len({s.repo for s in bench}) == 20
    assert sum(s.payload_size for s in bench) == 277 * MiB
    small = images.benchmark_dataset(repos=2, tags=3, total_mib=1)
    assert len(small) == 6 and sum(s.payload_size for s in small) == MiB
