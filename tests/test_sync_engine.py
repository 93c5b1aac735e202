"""The copy engine against two real distribution registries."""
from __future__ import annotations

import hashlib
import threading

import pytest

from connected.registry_client import RegistryClient
from connected.sync.engine import SyncObserver, sync_repositories
from devtools.images import ImageSpec, demo_dataset, populate

pytestmark = pytest.mark.registries


def raw_manifest(client: RegistryClient, repo: str, ref: str) -> bytes:
    return client.get_manifest(repo, ref).content


@pytest.fixture
def demo_parent(parent_registry):
    pushed = populate(parent_registry.host, demo_dataset())
    return parent_registry, pushed


def test_full_sync_copies_every_tag_byte_for_byte(demo_parent, child_registry):
    parent, pushed = demo_parent
    repos = sorted({p.repo for p in pushed})
    with RegistryClient(parent.url) as src, RegistryClient(child_registry.url) as dst:
        result = sync_repositories(src, dst, repos)
        assert result.errors == [] and result.count("failed") == 0
        assert result.count("copied") == len(pushed)
        for image in pushed:
            # Same digest, same bytes; indexes keep every platform.
            assert dst.head_manifest(image.repo, image.tag) == image.digest
            content = raw_manifest(dst, image.repo, image.tag)
            assert "sha256:" + hashlib.sha256(content).hexdigest() == image.digest
            top = dst.get_manifest(image.repo, image.tag)
            if top.is_index():
                assert len(top.child_manifests()) == len(image.spec.platforms) == 2
                for child in top.child_manifests():
                    assert dst.head_manifest(image.repo, child.digest) == child.digest
                    for blob in dst.get_manifest(image.repo, child.digest).blobs():
                        assert dst.blob_exists(image.repo, blob.digest)
            for blob in top.blobs():
                assert dst.blob_exists(image.repo, blob.digest)
        assert sorted(dst.list_tags("hello-world")) == ["1.0", "latest"]


def test_resync_with_nothing_changed_moves_nothing(demo_parent, child_registry):
    parent, pushed = demo_parent
    repos = sorted({p.repo for p in pushed})
    with RegistryClient(parent.url) as src, RegistryClient(child_registry.url) as dst:
        first = sync_repositories(src, dst, repos)
        assert first.bytes_moved > 0
        again = sync_repositories(src, dst, repos)
    assert again.bytes_moved == 0
    assert again.count("in_sync") == len(pushed) and again.count("copied") == 0


def test_changed_tag_is_copied_again_and_shared_base_layer_is_not(demo_parent, child_registry):
    parent, _ = demo_parent
    with RegistryClient(parent.url) as src, RegistryClient(child_registry.url) as dst:
        sync_repositories(src, dst, ["hello-world"])
        [new] = populate(parent.host, [ImageSpec("hello-world", "1.0", seed="changed", payload_size=4096)])
        result = sync_repositories(src, dst, ["hello-world"])
        assert dst.head_manifest("hello-world", "1.0") == new.digest
    by_tag = {t.tag: t for t in result.tags}
    assert by_tag["1.0"].outcome == "copied" and by_tag["latest"].outcome == "in_sync"
    # Only the new image's own layer and config travel: the busybox base is there already.
    assert 4096 < result.bytes_moved < 64 * 1024


def test_only_selected_repositories_are_copied(demo_parent, child_registry):
    parent, _ = demo_parent
    with RegistryClient(parent.url) as src, RegistryClient(child_registry.url) as dst:
        sync_repositories(src, dst, ["app/frontend"])
        assert dst.catalog() == ["app/frontend"]


def test_a_repository_missing_at_the_parent_is_not_an_error(demo_parent, child_registry):
    parent, _ = demo_parent
    with RegistryClient(parent.url) as src, RegistryClient(child_registry.url) as dst:
        result = sync_repositories(src, dst, ["does/not-exist", "hello-world"])
    assert result.errors == [] and result.count("copied") == 2


def test_a_blob_shared_by_many_images_is_transferred_once(parent_registry, child_registry):
    specs = [ImageSpec(f"shared/r{i}", "v1", seed="same-payload", payload_size=256 * 1024) for i in range(4)]
    populate(parent_registry.host, specs)

    class Counter(SyncObserver):
        def __init__(self):
            self.lock, self.total = threading.Lock(), 0

        def moved(self, n):
            with self.lock:
                self.total += n

    counter = Counter()
    with RegistryClient(parent_registry.url) as src, RegistryClient(child_registry.url) as dst:
        result = sync_repositories(src, dst, [s.repo for s in specs], parallelism=4, observer=counter)
    assert result.count("copied") == 4
    # One payload layer, one base layer and the configs: not four payloads.
    assert counter.total == result.bytes_moved < 2 * 256 * 1024 + 2 * 1024 * 1024


def test_stop_request_leaves_no_half_written_tag(parent_registry, child_registry):
    specs = [ImageSpec("big/app", f"v{i}", payload_size=4 * 1024 * 1024) for i in range(6)]
    pushed = populate(parent_registry.host, specs)

    class StopAfterTwoTags(SyncObserver):
        def __init__(self):
            self.finished = 0

        def tag_finished(self, result):
            self.finished += 1

        def stop_reason(self):
            return "cancelled" if self.finished >= 2 else None

    with RegistryClient(parent_registry.url) as src, RegistryClient(child_registry.url) as dst:
        result = sync_repositories(src, dst, ["big/app"], parallelism=2, observer=StopAfterTwoTags())
        assert result.stopped == "cancelled"
        tags_at_child = set(dst.list_tags("big/app"))
        assert 2 <= len(tags_at_child) < len(specs)
        # Every tag the child has is complete and at the parent's digest.
        for image in pushed:
            if image.tag in tags_at_child:
                assert dst.head_manifest("big/app", image.tag) == image.digest
                for blob in dst.get_manifest("big/app", image.tag).blobs():
                    assert dst.blob_exists("big/app", blob.digest)
