"""The portal's pages: login, registry list, connected registries, runs.

Data is created with the ORM; no registry is contacted."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connected.models import ConnectedRegistry, Registry, SyncRun, SyncRunTag

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


@pytest.fixture
def registry():
    return Registry.objects.create(name="myacrregistry", login_server="http://127.0.0.1:5001",
                                   data_endpoint_enabled=True)


@pytest.fixture
def user():
    return get_user_model().objects.create_user("operator", password="s3cret-pass")


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("admin", password="s3cret-pass", is_staff=True)


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def staff_browser(client, staff):
    client.force_login(staff)
    return client


def make_cr(registry, name, parent=None, **fields):
    return ConnectedRegistry.objects.create(registry=registry, parent=parent, name=name, **fields)


@pytest.fixture
def tree(registry):
    """zroot > (bchild > leafone), and aroot on its own (alphabetically first)."""
    zroot = make_cr(registry, "zroot", mode="ReadWrite", login_server="http://10.0.0.1:5000",
                    connection_state="Online", last_sync_at=T0, repositories=["hello-world", "acr/connected-registry"])
    bchild = make_cr(registry, "bchild", parent=zroot, sync_schedule="0 2 * * *", sync_window="PT3H",
                     connection_state="Unhealthy")
    leaf = make_cr(registry, "leafone", parent=bchild)
    aroot = make_cr(registry, "aroot", connection_state="Syncing")
    return {"zroot": zroot, "bchild": bchild, "leafone": leaf, "aroot": aroot}


def list_url(registry):
    return reverse("connected_registry_list", args=[registry.name])


def detail_url(cr):
    return reverse("connected_registry_detail", args=[cr.registry.name, cr.name])


def body_rows(html):
    tbody = re.search(r"<tbody id=\"connected-registry-rows\".*?</tbody>", html, re.S).group(0)
    return re.findall(r"<tr>(.*?)</tr>", tbody, re.S)


def row_names(html):
    return [re.search(r">(\w+)</a></th>", row).group(1) for row in body_rows(html)]


# --- login -------------------------------------------------------------------

@pytest.mark.parametrize("name,args", [
    ("home", []),
    ("connected_registry_list", ["myacrregistry"]),
    ("connected_registry_detail", ["myacrregistry", "zroot"]),
])
def test_pages_require_login(client, tree, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_htmx_poll_after_logout_sends_the_page_to_login(client, registry):
    response = client.get(list_url(registry), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login"))


def test_login_then_logout(client, user, registry):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b'name="password"' in page.content

    bad = client.post(reverse("login"), {"username": "operator", "password": "wrong"})
    assert bad.status_code == 200 and b"role=\"alert\"" in bad.content

    response = client.post(reverse("login"), {"username": "operator", "password": "s3cret-pass"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200

    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


# --- home --------------------------------------------------------------------

def test_home_lists_registries_with_counts(browser, tree):
    Registry.objects.create(name="otherregistry", login_server="http://127.0.0.1:5002")
    html = browser.get(reverse("home")).content.decode()
    assert 'href="/registries/myacrregistry/connected-registries/"' in html
    assert "4 connected registries" in html
    assert "0 connected registries" in html


def test_home_empty_state(browser):
    assert "No registries yet" in browser.get(reverse("home")).content.decode()


# --- connected registries list ---------------------------------------------

def test_list_shows_tree_order_columns_and_badges(browser, registry, tree):
    SyncRun.objects.create(connected_registry=tree["zroot"], status="failed", queued_at=T0)
    latest = SyncRun.objects.create(connected_registry=tree["zroot"], status="succeeded",
                                    queued_at=T0 + dt.timedelta(minutes=1))
    response = browser.get(list_url(registry))
    assert response.status_code == 200
    html = response.content.decode()

    for column in ("Name", "Mode", "Connection state", "Parent", "Login server", "Last sync (UTC)",
                   "Sync schedule", "Sync window", "Latest run"):
        assert f'<th scope="col">{column}</th>' in html
    assert row_names(html) == ["aroot", "zroot", "bchild", "leafone"]

    rows = dict(zip(row_names(html), body_rows(html)))
    assert 'style="--depth: 2"' in rows["leafone"] and 'style="--depth: 0"' in rows["zroot"]
    assert '<span class="badge state-online">Online</span>' in rows["zroot"]
    assert '<span class="badge state-unhealthy">Unhealthy</span>' in rows["bchild"]
    assert '<span class="badge state-offline">Offline</span>' in rows["leafone"]
    assert "ReadWrite" in rows["zroot"] and "http://10.0.0.1:5000" in rows["zroot"]
    assert "2024-05-06 07:08:09 UTC" in rows["zroot"] and "never" in rows["bchild"]
    assert "<td>myacrregistry</td>" in rows["zroot"] and "<td>zroot</td>" in rows["bchild"]
    assert "<code>0 2 * * *</code>" in rows["bchild"] and "<td>PT3H</td>" in rows["bchild"]
    assert "<td>-</td>" in rows["zroot"]
    assert f"/runs/{latest.pk}/" in rows["zroot"] and "run-succeeded" in rows["zroot"]
    assert "no runs" in rows["aroot"]


def test_list_htmx_returns_the_rows_partial_only(browser, registry, tree):
    response = browser.get(list_url(registry), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<tbody id="connected-registry-rows"')
    assert "<html" not in html and "<thead" not in html
    assert 'hx-trigger="every 5s"' in html
    assert row_names(html) == ["aroot", "zroot", "bchild", "leafone"]
    assert "HX-Request" in response["Vary"]


def test_full_list_page_polls_its_rows(browser, registry, tree):
    html = browser.get(list_url(registry)).content.decode()
    assert "<html" in html and "htmx" in html
    assert f'hx-get="{list_url(registry)}" hx-trigger="every 5s"' in html


def test_list_empty_state_gives_the_create_command(browser, registry):
    html = browser.get(list_url(registry)).content.decode()
    assert "python manage.py acr connected-registry create --registry myacrregistry" in html


def test_unknown_registry_is_404(browser, registry):
    assert browser.get("/registries/nosuchregistry/connected-registries/").status_code == 404


def test_list_query_count_does_not_grow_with_rows(browser):
    def queries_for(count):
        registry = Registry.objects.create(name=f"registry{count}", login_server="http://127.0.0.1:5001")
        parent = None
        for i in range(count):
            cr = make_cr(registry, f"conn{i:03d}", parent=parent if i % 2 else None)
            SyncRun.objects.create(connected_registry=cr, status="succeeded")
            parent = cr
        with CaptureQueriesContext(connection) as ctx:
            response = browser.get(list_url(registry))
        assert response.status_code == 200 and len(body_rows(response.content.decode())) == count
        return len(ctx.captured_queries)

    assert queries_for(5) == queries_for(50)


# --- detail ---------------------------------------------------------------

def test_detail_shows_overview_repositories_and_runs(browser, tree):
    cr = tree["zroot"]
    cr.status_details = [{"type": "Sync", "code": "E42", "description": "parent unreachable",
                          "timestamp": "2024-05-06T07:00:00Z"}]
    cr.save()
    run = SyncRun.objects.create(connected_registry=cr, trigger="manual", status="partial", queued_at=T0,
                                 started_at=T0, finished_at=T0 + dt.timedelta(seconds=5), tags_copied=3,
                                 tags_skipped=2, tags_failed=1, bytes_moved=5 * 1024 * 1024, error="one tag failed")
    for i in range(25):
        SyncRun.objects.create(connected_registry=cr, status="succeeded", queued_at=T0 - dt.timedelta(hours=i + 1))

    html = browser.get(detail_url(cr)).content.decode()
    assert "<code>hello-world</code>" in html and "<code>acr/connected-registry</code>" in html
    assert '<span class="badge state-online">Online</span>' in html
    assert "parent unreachable" in html and "E42" in html
    assert "P2D" in html and "Inactive" in html and "(continuous)" in html
    assert f"/runs/{run.pk}/" in html and "5.0\xa0MB" in html and "one tag failed" in html
    assert '<span class="badge run-partial">partial</span>' in html
    assert html.count("/runs/") == 20
    # Nothing is running: no polling.
    assert "hx-trigger" not in html
    assert "Sync now" not in html  # not staff


def test_detail_polls_while_a_run_is_active_and_htmx_gets_the_partial(browser, tree):
    cr = tree["bchild"]
    SyncRun.objects.create(connected_registry=cr, status="running", started_at=T0)
    html = browser.get(detail_url(cr)).content.decode()
    assert 'hx-trigger="every 3s"' in html

    partial = browser.get(detail_url(cr), headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<div id="connected-registry-live"')
    assert "<html" not in partial and "Sync now" not in partial


def test_detail_of_nested_links_its_parent(browser, tree):
    html = browser.get(detail_url(tree["leafone"])).content.decode()
    assert f'href="{detail_url(tree["bchild"])}"' in html


# --- sync now ---------------------------------------------------------------

def test_sync_now_is_post_only(staff_browser, tree):
    url = reverse("connected_registry_sync", args=["myacrregistry", "zroot"])
    assert staff_browser.get(url).status_code == 405


def test_sync_now_forbidden_to_non_staff(browser, tree):
    url = reverse("connected_registry_sync", args=["myacrregistry", "zroot"])
    assert browser.post(url).status_code == 403
    assert not SyncRun.objects.exists()


def test_sync_now_queues_a_manual_run(staff_browser, tree):
    cr = tree["zroot"]
    assert "Sync now" in staff_browser.get(detail_url(cr)).content.decode()
    response = staff_browser.post(reverse("connected_registry_sync", args=["myacrregistry", "zroot"]), follow=True)
    run = SyncRun.objects.get(connected_registry=cr)
    assert run.trigger == "manual" and run.status == "queued"
    assert f"Sync of zroot queued (run {run.pk})" in response.content.decode()


def test_sync_now_shows_why_it_refuses(staff_browser, tree):
    response = staff_browser.post(reverse("connected_registry_sync", args=["myacrregistry", "aroot"]), follow=True)
    assert "cannot sync &#x27;aroot&#x27;: it has no login server" in response.content.decode()
    assert not SyncRun.objects.exists()


# --- run detail -------------------------------------------------------------

def test_run_page_shows_the_ledger(browser, tree):
    cr = tree["zroot"]
    run = SyncRun.objects.create(connected_registry=cr, status="partial", queued_at=T0, started_at=T0,
                                 finished_at=T0 + dt.timedelta(seconds=75))
    SyncRunTag.objects.create(run=run, repository="hello-world", tag="latest", digest="sha256:" + "a" * 64,
                              outcome="copied", bytes_moved=2048)
    SyncRunTag.objects.create(run=run, repository="hello-world", tag="v1", outcome="failed",
                              reason="manifest unknown")
    SyncRunTag.objects.create(run=run, repository="acr/connected-registry", tag="1.0", outcome="in_sync")

    html = browser.get(reverse("run_detail", args=["myacrregistry", "zroot", run.pk])).content.decode()
    assert "Tags (3)" in html
    assert "sha256:" + "a" * 64 in html and "2.0\xa0KB" in html
    assert "manifest unknown" in html and "already in sync" in html
    assert html.index("acr/connected-registry") < html.index("<code>latest</code>")
    assert "1m 15s" in html and "hx-trigger" not in html


def test_run_of_another_connected_registry_is_404(browser, tree):
    run = SyncRun.objects.create(connected_registry=tree["aroot"])
    assert browser.get(reverse("run_detail", args=["myacrregistry", "zroot", run.pk])).status_code == 404
