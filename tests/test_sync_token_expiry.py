"""A bearer token that expires during a long transfer: the transfer goes on,
and the next requests present a renewed token."""
from __future__ import annotations

import pytest

from connected.registry_client import RegistryClient
from connected.sync.engine import sync_repositories
from devtools.faultproxy import FaultProxy
from devtools.images import ImageSpec
from devtools.tokenserver import TokenServer
from tests.test_sync_failures import assert_child_complete

pytestmark = pytest.mark.registries

PASSWORD = "sync-pass-not-secret"


def test_a_sync_outlives_its_tokens(registry_factory, tmp_path):
    policy = {"sync": {"repository:*": {"pull", "push", "delete"}, "registry:catalog": {"*"}},
              "pusher": {"repository:*": {"pull", "push"}}}
    users = {"sync": PASSWORD, "pusher": PASSWORD}
    # Tokens live 2 seconds; the slow transfers below take several times that.
    with TokenServer(tmp_path / "tokens", users=users, policy=policy, token_seconds=2) as tokens:
        parent = registry_factory("parent", auth=tokens.registry_auth())
        child = registry_factory("child", auth=tokens.registry_auth())
        with FaultProxy.start(parent.url) as slow:
            slow.throttle(400 * 1024)
            images = [ImageSpec("big/app", f"v{i}", payload_size=1024 * 1024, seed=f"s{i}") for i in range(3)]
            with RegistryClient(parent.url, "pusher", PASSWORD) as pusher:
                for spec in images:  # an authenticated push, through the client
                    _push_spec(pusher, spec)
            asked_before = len(tokens.requests)
            with RegistryClient(slow.url, "sync", PASSWORD) as src, RegistryClient(child.url, "sync", PASSWORD) as dst:
                result = sync_repositories(src, dst, ["big/app"], parallelism=1)
                assert result.count("copied") == 3 and result.count("failed") == 0, result.tags
                with RegistryClient(parent.url, "sync", PASSWORD) as parent_client:
                    assert_child_complete(dst, parent_client, ["big/app"])
        # Each ~1 MiB layer took ~2.5 s at 400 KiB/s: tokens expired mid-run and were renewed.
        assert len(tokens.requests) - asked_before >= 4


def _push_spec(client: RegistryClient, spec: ImageSpec) -> None:
    """Push one single-platform image of devtools.images to an authenticated registry."""
    from pathlib import Path

    from connected.registry_client import Manifest
    from devtools.images import build_spec

    layout = Path(build_spec(spec))
    index = __import__("json").loads((layout / "index.json").read_text())
    top = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name")
               == spec.tag)

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    manifest = Manifest.from_bytes(blob(top["digest"]), top["mediaType"])
    for descriptor in manifest.blobs():
        data = blob(descriptor.digest)
        if not client.blob_exists(spec.repo, descriptor.digest):
            client.upload_blob(spec.repo, descriptor.digest, len(data), [data])
    client.put_manifest(spec.repo, spec.tag, manifest)
