"""A tag changed on both sides of a ReadWrite connected registry, carried out
by a worker's run: recorded in the ledger, shown on the detail page, and
neither version lost on either side."""
from __future__ import annotations

import pytest

from connected import operations
from connected.models import SyncRun, SyncRunTag
from connected.registry_client import RegistryClient
from connected.sync.runner import execute_run
from connected.sync.twoway import conflict_tag
from devtools.images import ImageSpec, populate

pytestmark = [pytest.mark.registries, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def writer(parent_registry, child_registry):
    populate(parent_registry.host, [ImageSpec("app", "1.0")])
    registry = operations.create_registry("myacrregistry", parent_registry.url, data_endpoint_enabled=True)
    cr = operations.create_connected_registry(registry, "vessel01", ["app"], mode="ReadWrite",
                                              login_server=child_registry.url)
    run = SyncRun.objects.create(connected_registry=cr)
    execute_run(run.pk)
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.SUCCEEDED
    return cr


def test_a_conflict_is_recorded_shown_and_both_versions_kept(writer, parent_registry, child_registry, client,
                                                             django_user_model):
    [at_parent] = populate(parent_registry.host, [ImageSpec("app", "1.0", seed="changed-at-the-parent")])
    [at_child] = populate(child_registry.host, [ImageSpec("app", "1.0", seed="changed-on-the-vessel")])
    run = SyncRun.objects.create(connected_registry=writer)
    execute_run(run.pk)

    [entry] = SyncRunTag.objects.filter(run=run, outcome=SyncRunTag.Outcome.CONFLICT)
    kept = conflict_tag("1.0", "vessel01", at_child.digest)
    assert entry.tag == "1.0" and entry.digest == at_parent.digest
    assert f"'{kept}'" in entry.reason and at_child.digest in entry.reason
    for side in (parent_registry, child_registry):
        with RegistryClient(side.url) as c:
            assert c.head_manifest("app", "1.0") == at_parent.digest
            assert c.head_manifest("app", kept) == at_child.digest

    client.force_login(django_user_model.objects.create_user("viewer", password="pw-viewer-1"))
    html = client.get("/registries/myacrregistry/connected-registries/vessel01/").content.decode()
    panel = html[html.index('id="cr-conflicts"'):]
    panel = panel[:panel.index("</section>")]
    assert "<code>app:1.0</code>" in panel and kept in panel and at_child.digest in panel
    assert f"/runs/{run.pk}/" in panel


def test_a_read_write_registry_without_conflicts_says_so(writer, client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-viewer-1"))
    html = client.get("/registries/myacrregistry/connected-registries/vessel01/").content.decode()
    assert "No conflict recorded." in html
