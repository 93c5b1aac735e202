"""The copy engine when the network or a registry misbehaves: real
distribution registries with devtools.faultproxy in front of the parent (or
the child) dropping connections mid-blob, answering 500 and 429, crawling
like a slow link, or breaking one tag for good. Whatever happens, the child
never holds a tag whose manifests or blobs are incomplete."""
from __future__ import annotations

import pytest

from connected.registry_client import OCI_MANIFEST, Manifest, NotFound, RegistryClient
from connected.sync.engine import sync_repositories
from devtools.faultproxy import FaultProxy
from devtools.images import MiB, ImageSpec, populate

pytestmark = pytest.mark.registries

APP = "fail/app"
MULTI = "fail/multi"
SPECS = [
    ImageSpec(APP, "v1", payload_size=2 * MiB),
    ImageSpec(APP, "v2", payload_size=2 * MiB),
    ImageSpec(APP, "v3", payload_size=2 * MiB),
    ImageSpec(MULTI, "latest", platforms=("linux/amd64", "linux/arm64"), payload_size=256 * 1024),
]


@pytest.fixture
def images(parent_registry):
    pushed = populate(parent_registry.host, SPECS)
    return {(p.repo, p.tag): p.digest for p in pushed}


@pytest.fixture
def parent(parent_registry):
    with RegistryClient(parent_registry.url) as client:
        yield client


@pytest.fixture
def child(child_registry):
    with RegistryClient(child_registry.url) as client:
        yield client


@pytest.fixture
def proxy_factory():
    proxies = []

    def make(registry) -> FaultProxy:
        proxies.append(FaultProxy(registry.port))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


def quick(client: RegistryClient) -> RegistryClient:
    """Retries without the long backoff (a Retry-After is still honoured)."""
    client.backoff_base = 0.01
    return client


def payload_layer(client: RegistryClient, repo: str, ref: str) -> str:
    """The digest of the largest layer of an image (its own payload)."""
    return max(client.get_manifest(repo, ref).blobs(), key=lambda b: b.size).digest


def layer_size(client: RegistryClient, repo: str, ref: str) -> int:
    return max(b.size for b in client.get_manifest(repo, ref).blobs())


def walk(client: RegistryClient, repo: str, digest: str) -> list[Manifest]:
    """The manifest at digest and every manifest it references, read from client."""
    manifest = client.get_manifest(repo, digest)  # checks the bytes against the digest
    found = [manifest]
    for ref in manifest.child_manifests():
        found += walk(client, repo, ref.digest)
    return found


def assert_child_complete(child: RegistryClient, parent: RegistryClient, repos) -> set[tuple[str, str]]:
    """Every tag on the child points at the parent's digest, and every
    manifest and blob under it is on the child, whole (read and hashed).
    Returns the (repository, tag) pairs the child holds."""
    held = set()
    for repo in repos:
        try:
            tags = child.list_tags(repo)
        except NotFound:
            continue
        for tag in tags:
            digest = child.head_manifest(repo, tag)
            assert digest == parent.head_manifest(repo, tag), f"{repo}:{tag} differs from the parent"
            for manifest in walk(child, repo, digest):
                for blob in manifest.blobs():
                    with child.open_blob(repo, blob.digest) as stream:  # DigestMismatch if not whole
                        assert sum(len(c) for c in stream.iter_chunks()) == blob.size
            held.add((repo, tag))
    return held


def outcomes(result) -> dict[tuple[str, str], str]:
    return {(t.repository, t.tag): t.outcome for t in result.tags}


ALL = {(APP, "v1"), (APP, "v2"), (APP, "v3"), (MULTI, "latest")}


# --- transient faults: the run still copies everything ---------------------------

def test_connections_dropped_mid_blob_are_started_again(images, parent, child, parent_registry, proxy_factory):
    proxy = proxy_factory(parent_registry)
    v1_layer, v2_layer = payload_layer(parent, APP, "v1"), payload_layer(parent, APP, "v2")
    proxy.cut("GET", v1_layer, after_bytes=500_000, times=2)  # twice in a row: copy_blob's third attempt
    proxy.cut("GET", v2_layer, after_bytes=1_000_000, times=1)
    with quick(RegistryClient(proxy.url)) as source:
        result = sync_repositories(source, child, [APP, MULTI])
    assert result.errors == [] and set(outcomes(result).values()) == {"copied"}, result
    # Progress counts each byte once although broken attempts moved some already.
    assert result.bytes_moved == result.bytes_planned > 6 * MiB
    proxy.settle()
    assert [(e.action, e.body_bytes) for e in proxy.requests("GET", v1_layer)] == [
        ("cut", 500_000), ("cut", 500_000), ("forwarded", layer_size(parent, APP, "v1"))]
    assert [e.action for e in proxy.requests("GET", v2_layer)] == ["cut", "forwarded"]
    assert assert_child_complete(child, parent, [APP, MULTI]) == ALL


def test_500_on_a_manifest_get_is_retried(images, parent, child, parent_registry, proxy_factory):
    proxy = proxy_factory(parent_registry)
    digest = images[(APP, "v1")]
    proxy.fail("GET", f"/v2/{APP}/manifests/{digest}", 500, times=2)
    proxy.fail("GET", f"/v2/{MULTI}/tags/list", 503, times=1)
    proxy.cut("GET", f"/v2/{APP}/manifests/{images[(APP, 'v2')]}", after_bytes=100, times=1)  # dropped mid-manifest
    with quick(RegistryClient(proxy.url, retries=3)) as source:
        result = sync_repositories(source, child, [APP, MULTI])
    assert result.errors == [] and set(outcomes(result).values()) == {"copied"}, result
    assert [e.status for e in proxy.requests("GET", f"/manifests/{digest}")] == [500, 500, 200]
    assert [e.status for e in proxy.requests("GET", f"/v2/{MULTI}/tags/list")] == [503, 200]
    proxy.settle()
    assert [e.action for e in proxy.requests("GET", f"/manifests/{images[(APP, 'v2')]}")] == ["cut", "forwarded"]
    assert assert_child_complete(child, parent, [APP, MULTI]) == ALL


def test_429_waits_for_retry_after(images, parent, child, parent_registry, proxy_factory):
    proxy = proxy_factory(parent_registry)
    layer = payload_layer(parent, APP, "v2")
    digest = images[(APP, "v3")]
    proxy.fail("GET", layer, 429, times=1, headers={"Retry-After": "1"})
    proxy.fail("GET", f"/manifests/{digest}", 429, times=1, headers={"Retry-After": "2"})
    with quick(RegistryClient(proxy.url)) as source:
        result = sync_repositories(source, child, [APP])
    assert result.errors == [] and set(outcomes(result).values()) == {"copied"}, result
    proxy.settle()
    for path, delay in ((layer, 1.0), (f"/manifests/{digest}", 2.0)):
        limited, retried = proxy.requests("GET", path)
        assert (limited.status, retried.status) == (429, 200)
        # The retry came no sooner than the registry asked (the client's own
        # backoff here is 10 ms, so only Retry-After explains the wait).
        assert retried.started - limited.finished >= delay - 0.05, (path, retried.started - limited.finished)
    assert assert_child_complete(child, parent, [APP]) == {(APP, "v1"), (APP, "v2"), (APP, "v3")}


def test_a_slow_link_finishes_although_it_takes_longer_than_the_timeout(images, parent, child, parent_registry,
                                                                       proxy_factory):
    proxy = proxy_factory(parent_registry)
    proxy.throttle(MiB)  # shared by all transfers; about 20 pieces a second
    timeout = 1.0
    with RegistryClient(proxy.url, timeout=timeout, retries=0) as source:
        result = sync_repositories(source, child, [APP], parallelism=2)
    assert result.errors == [] and set(outcomes(result).values()) == {"copied"}, result
    proxy.settle()
    blob_gets = proxy.requests("GET", r"/blobs/sha256:")
    # Each blob went over once (no timeout, no retry), and the big ones took
    # far longer than the client's timeout: it is a limit on idleness only.
    assert len(blob_gets) == len({e.path for e in blob_gets}) and {e.status for e in blob_gets} == {200}
    slowest = max(e.finished - e.started for e in blob_gets)
    assert slowest > 1.5 * timeout, slowest  # a 2 MiB layer needs 2 s at 1 MiB/s, however it shares the link
    assert assert_child_complete(child, parent, [APP]) == {(APP, "v1"), (APP, "v2"), (APP, "v3")}


def test_5xx_while_uploading_to_the_child_is_retried(images, parent, child_registry, parent_registry, proxy_factory):
    proxy = proxy_factory(child_registry)
    layer = payload_layer(parent, APP, "v1")
    proxy.fail("PUT", rf"/blobs/uploads/.*digest={layer.replace(':', '(:|%3A)')}", 500, times=1)
    proxy.fail("PUT", f"/v2/{APP}/manifests/v2", 502, times=1)
    with quick(RegistryClient(proxy.url)) as dest:
        result = sync_repositories(parent, dest, [APP])
        assert result.errors == [] and set(outcomes(result).values()) == {"copied"}, result
        assert assert_child_complete(dest, parent, [APP]) == {(APP, "v1"), (APP, "v2"), (APP, "v3")}
    assert [e.status for e in proxy.requests("PUT", f"/v2/{APP}/manifests/v2")] == [502, 201]
    assert [e.status for e in proxy.requests("PUT", layer.replace(":", "(:|%3A)"))] == [500, 201]


# --- lasting faults: one broken tag, the others go on ----------------------------------

def corrupt(proxy: FaultProxy, repo: str, digest: str) -> None:
    """Serve other bytes than the manifest at digest, every time."""
    proxy.fail("GET", f"/v2/{repo}/manifests/{digest}", 200, times=None, body=b'{"schemaVersion":2,"layers":[]}',
               headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest})


@pytest.mark.parametrize("fault", ["blob always 500", "corrupt manifest", "corrupt manifest in an index"])
def test_one_broken_tag_does_not_stop_the_others(fault, images, parent, child, parent_registry, proxy_factory):
    proxy = proxy_factory(parent_registry)
    if fault == "blob always 500":
        broken = (APP, "v2")
        proxy.fail("GET", payload_layer(parent, APP, "v2"), 500, times=None)
        reason = "500"
    elif fault == "corrupt manifest":
        broken = (APP, "v2")
        corrupt(proxy, APP, images[broken])
        reason = "read as"
    else:
        broken = (MULTI, "latest")
        arm64 = parent.get_manifest(MULTI, "latest").child_manifests()[1].digest
        corrupt(proxy, MULTI, arm64)
        reason = "read as"
    with quick(RegistryClient(proxy.url, retries=1)) as source:
        result = sync_repositories(source, child, [APP, MULTI])
    assert result.errors == []
    assert outcomes(result) == {key: "failed" if key == broken else "copied" for key in ALL}
    [failed] = [t for t in result.tags if t.outcome == "failed"]
    assert reason in failed.reason and failed.reason, failed.reason
    held = assert_child_complete(child, parent, [APP, MULTI])
    assert held == ALL - {broken}  # the child has no tag for the broken one


def test_the_child_never_holds_an_incomplete_tag(images, parent, child_registry, proxy_factory):
    """Writes to the child fail for good for two tags (a blob upload, a
    platform manifest of an index): those tags are not written, the others
    are, and every tag the child has is complete."""
    proxy = proxy_factory(child_registry)
    layer = payload_layer(parent, APP, "v2").replace(":", "(:|%3A)")
    arm64 = parent.get_manifest(MULTI, "latest").child_manifests()[1].digest
    proxy.fail("PUT", rf"/blobs/uploads/.*digest={layer}", 500, times=None)
    proxy.fail("PUT", f"/v2/{MULTI}/manifests/{arm64}", 500, times=None)
    with quick(RegistryClient(proxy.url, retries=1)) as dest:
        result = sync_repositories(parent, dest, [APP, MULTI])
        assert outcomes(result) == {(APP, "v1"): "copied", (APP, "v2"): "failed", (APP, "v3"): "copied",
                                    (MULTI, "latest"): "failed"}
        assert assert_child_complete(dest, parent, [APP, MULTI]) == {(APP, "v1"), (APP, "v3")}
    # Never even attempted: a tag is written only once all it references is there.
    assert proxy.requests("PUT", f"/v2/{APP}/manifests/v2") == []
    assert proxy.requests("PUT", f"/v2/{MULTI}/manifests/latest") == []


def test_every_copied_tag_is_checked_on_the_child_after_it_is_written(images, parent, child_registry,
                                                                      proxy_factory):
    proxy = proxy_factory(child_registry)
    with RegistryClient(proxy.url) as dest:
        result = sync_repositories(parent, dest, [APP, MULTI])
    assert set(outcomes(result).values()) == {"copied"}
    log = proxy.requests()
    for repo, tag in ALL:
        [put] = [i for i, e in enumerate(log) if e.method == "PUT" and e.path == f"/v2/{repo}/manifests/{tag}"]
        checked = {(e.method, e.path) for e in log[put + 1:]}
        manifests = walk(parent, repo, images[(repo, tag)])
        expected = {("HEAD", f"/v2/{repo}/manifests/{tag}")}
        expected |= {("HEAD", f"/v2/{repo}/manifests/{m.digest}") for m in manifests[1:]}
        expected |= {("HEAD", f"/v2/{repo}/blobs/{b.digest}") for m in manifests for b in m.blobs()}
        assert expected <= checked, (repo, tag, expected - checked)
