"""Deletes: tags gone from the parent go from the child, and nothing else."""
from __future__ import annotations

import pytest

from connected.registry_client import NotFound, RegistryClient
from connected.sync.engine import sync_repositories
from devtools.images import ImageSpec, populate

pytestmark = pytest.mark.registries


@pytest.fixture
def pair(parent_registry, child_registry):
    with RegistryClient(parent_registry.url) as src, RegistryClient(child_registry.url) as dst:
        yield parent_registry, src, dst


def tags(client, repo):
    try:
        return sorted(client.list_tags(repo))
    except NotFound:
        return []


def delete_tag_at_parent(client, repo, tag):
    from connected.sync.tombstone import delete_tag
    delete_tag(client, repo, tag)


def test_a_tag_deleted_at_the_parent_is_deleted_at_the_child(pair):
    parent, src, dst = pair
    populate(parent.host, [ImageSpec("app", "1.0"), ImageSpec("app", "2.0", seed="two")])
    sync_repositories(src, dst, ["app"])
    delete_tag_at_parent(src, "app", "1.0")
    result = sync_repositories(src, dst, ["app"])
    assert tags(dst, "app") == ["2.0"]
    [deleted] = [t for t in result.tags if t.outcome == "deleted"]
    assert deleted.tag == "1.0" and deleted.digest.startswith("sha256:")


def test_a_digest_still_tagged_at_the_parent_survives(pair):
    parent, src, dst = pair
    [image] = populate(parent.host, [ImageSpec("app", "1.0")])
    src.put_manifest("app", "stable", src.get_manifest("app", "1.0"))  # two tags, one digest
    sync_repositories(src, dst, ["app"])
    assert tags(dst, "app") == ["1.0", "stable"]
    delete_tag_at_parent(src, "app", "1.0")
    sync_repositories(src, dst, ["app"])
    assert tags(dst, "app") == ["stable"]
    assert dst.head_manifest("app", "stable") == image.digest
    assert dst.get_manifest("app", "stable").content == src.get_manifest("app", "stable").content


def test_an_empty_parent_listing_deletes_nothing(pair):
    parent, src, dst = pair
    populate(parent.host, [ImageSpec("app", "1.0")])
    sync_repositories(src, dst, ["app"])
    delete_tag_at_parent(src, "app", "1.0")  # the parent's repository is now empty
    result = sync_repositories(src, dst, ["app"])
    assert tags(dst, "app") == ["1.0"] and result.count("deleted") == 0


def test_a_failed_parent_listing_deletes_nothing(parent_registry, child_registry):
    populate(parent_registry.host, [ImageSpec("app", "1.0")])
    with RegistryClient(parent_registry.url) as src, RegistryClient(child_registry.url) as dst:
        sync_repositories(src, dst, ["app"])
    parent_registry.stop()
    with RegistryClient(parent_registry.url, retries=0) as src, RegistryClient(child_registry.url) as dst:
        result = sync_repositories(src, dst, ["app"])
        assert result.errors and "listing the parent's tags failed" in result.errors[0]
        assert tags(dst, "app") == ["1.0"]


def test_synced_policy_keeps_tags_pushed_at_the_child(pair):
    parent, src, dst = pair
    populate(parent.host, [ImageSpec("app", "1.0"), ImageSpec("app", "2.0", seed="two")])
    sync_repositories(src, dst, ["app"], delete_policy="synced")
    dst.put_manifest("app", "local", dst.get_manifest("app", "1.0"))  # pushed at the child
    delete_tag_at_parent(src, "app", "2.0")
    result = sync_repositories(src, dst, ["app"], delete_policy="synced",
                               previously_synced={("app", "1.0"), ("app", "2.0")})
    assert tags(dst, "app") == ["1.0", "local"]
    assert [t.tag for t in result.tags if t.outcome == "deleted"] == ["2.0"]


def test_read_only_purges_repositories_removed_from_the_list(pair):
    parent, src, dst = pair
    populate(parent.host, [ImageSpec("keep", "1.0"), ImageSpec("drop", "1.0"), ImageSpec("drop", "2.0", seed="x")])
    sync_repositories(src, dst, ["keep", "drop"])
    result = sync_repositories(src, dst, ["keep"], purge_unlisted=True)
    assert tags(dst, "drop") == [] and tags(dst, "keep") == ["1.0"]
    assert sorted(t.tag for t in result.tags if t.repository == "drop" and t.outcome == "deleted") == ["1.0", "2.0"]
    assert tags(src, "drop") == ["1.0", "2.0"]  # the parent is untouched
