"""ReadWrite: pushes at the connected registry go up, the parent's changes
come down, nothing ping-pongs, and a conflict keeps both versions."""
from __future__ import annotations

import pytest

from connected.registry_client import NotFound, RegistryClient
from connected.sync.engine import SyncObserver, sync_repositories
from connected.sync.tombstone import delete_tag
from connected.sync.twoway import TwoWaySync, conflict_tag
from devtools.images import ImageSpec, populate

pytestmark = pytest.mark.registries


@pytest.fixture
def sides(parent_registry, registry_factory):
    child = registry_factory("rw-child")
    populate(parent_registry.host, [ImageSpec("app", "1.0"), ImageSpec("app", "2.0", seed="two")])
    with RegistryClient(parent_registry.url) as p, RegistryClient(child.url) as c:
        yield parent_registry, child, p, c


def two_way(p, c, base, repos=("app",)):
    """One run, and the base the next run would start from (what the ledger records)."""
    result = TwoWaySync(p, c, base, conflict_suffix="factory01").sync(list(repos))
    new_base = {(t.repository, t.tag): t.digest for t in result.tags
                if t.outcome in ("copied", "in_sync", "pushed", "conflict", "kept")}
    return result, new_base


def outcomes(result):
    return {t.tag: t.outcome for t in result.tags}


def tags(client, repo):
    try:
        return sorted(client.list_tags(repo))
    except NotFound:
        return []


def test_a_push_at_the_child_reaches_the_parent_and_a_sibling(sides, registry_factory):
    parent, child, p, c = sides
    _, base = two_way(p, c, {})
    [local] = populate(child.host, [ImageSpec("app", "edge", seed="pushed-at-the-edge")])
    result, base = two_way(p, c, base)
    assert outcomes(result)["edge"] == "pushed"
    assert p.head_manifest("app", "edge") == local.digest
    sibling = registry_factory("sibling")
    with RegistryClient(sibling.url) as s:
        sync_repositories(p, s, ["app"])
        assert s.head_manifest("app", "edge") == local.digest
    # No ping-pong: the next run finds everything in sync, nothing moves.
    again, _ = two_way(p, c, base)
    assert set(outcomes(again).values()) == {"in_sync"} and again.bytes_moved == 0


def test_the_parent_changes_come_down_and_are_not_sent_back(sides):
    parent, child, p, c = sides
    _, base = two_way(p, c, {})
    [changed] = populate(parent.host, [ImageSpec("app", "1.0", seed="new-at-parent")])
    result, base = two_way(p, c, base)
    assert outcomes(result)["1.0"] == "copied"
    assert c.head_manifest("app", "1.0") == changed.digest
    again, _ = two_way(p, c, base)
    assert outcomes(again)["1.0"] == "in_sync"


def test_a_conflict_keeps_both_versions(sides):
    parent, child, p, c = sides
    _, base = two_way(p, c, {})
    [at_parent] = populate(parent.host, [ImageSpec("app", "1.0", seed="parent-side")])
    [at_child] = populate(child.host, [ImageSpec("app", "1.0", seed="child-side")])
    result, base = two_way(p, c, base)
    [conflict] = [t for t in result.tags if t.tag == "1.0"]
    assert conflict.outcome == "conflict" and "kept as" in conflict.reason
    kept = conflict_tag("1.0", "factory01", at_child.digest)
    for side in (p, c):
        assert side.head_manifest("app", "1.0") == at_parent.digest
        assert side.head_manifest("app", kept) == at_child.digest
    again, _ = two_way(p, c, base)
    assert set(outcomes(again).values()) == {"in_sync"}


def test_deleted_at_the_parent_goes_but_a_local_push_stays(sides):
    parent, child, p, c = sides
    _, base = two_way(p, c, {})
    [local] = populate(child.host, [ImageSpec("app", "local", seed="local")])
    delete_tag(p, "app", "2.0")
    result, _ = two_way(p, c, base)
    assert outcomes(result)["2.0"] == "deleted" and outcomes(result)["local"] == "pushed"
    assert tags(c, "app") == ["1.0", "local"] and tags(p, "app") == ["1.0", "local"]


def test_an_empty_parent_repository_deletes_nothing(sides):
    parent, child, p, c = sides
    _, base = two_way(p, c, {})
    delete_tag(p, "app", "1.0")
    delete_tag(p, "app", "2.0")
    result, base = two_way(p, c, base)
    assert set(outcomes(result).values()) == {"kept"}
    assert tags(c, "app") == ["1.0", "2.0"] and tags(p, "app") == []  # nor pushed back up
    again, _ = two_way(p, c, base)
    assert set(outcomes(again).values()) == {"kept"} and tags(p, "app") == []


def test_conflict_tags_stay_valid():
    long = "v" * 128
    tag = conflict_tag(long, "Factory01", "sha256:" + "ab" * 32)
    assert len(tag) <= 128 and tag.endswith("-conflict-factory01-abababababab")


class Planned(SyncObserver):
    def __init__(self):
        self.nbytes = None

    def planned(self, tags, nbytes):
        self.nbytes = nbytes


def test_bytes_planned_count_each_shared_blob_once_per_direction(sides):
    """app:1.0 and app:2.0 share their base layer; the plan must not count it twice
    (a finished run showed 12% of its planned bytes moved)."""
    parent, child, p, c = sides
    observer = Planned()
    result = TwoWaySync(p, c, {}, conflict_suffix="factory01", observer=observer).sync(["app"])
    assert set(outcomes(result).values()) == {"copied"}
    assert observer.nbytes == result.bytes_moved > 0
    populate(child.host, [ImageSpec("other", "a", seed="edge-a"), ImageSpec("other", "b", seed="edge-b")])
    result = TwoWaySync(p, c, {}, conflict_suffix="factory01", observer=observer).sync(["other"])
    assert set(outcomes(result).values()) == {"pushed"}
    assert observer.nbytes == result.bytes_moved > 0
