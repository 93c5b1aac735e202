"""The portal's pages: login, roles, home, the connected registries list and
the status page. Data is made with the operations or the ORM; no registry is
contacted. Forms: test_pages_forms.py; actions: test_pages_actions.py."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from devtools.fleet import populate_fleet
from connected import operations
from connected.models import ConnectedRegistry, Registry, SyncMessage, SyncRun

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


@pytest.fixture
def registry():
    return Registry.objects.create(name="myacrregistry", login_server="http://127.0.0.1:5001",
                                   data_endpoint_enabled=True)


@pytest.fixture
def viewer(django_user_model):
    return django_user_model.objects.create_user("teamviewer", password="s3cret-pass")


@pytest.fixture
def administrator(django_user_model):
    user = django_user_model.objects.create_user("opsadmin", password="s3cret-pass")
    user.groups.add(Group.objects.get_or_create(name="Administrators")[0])
    return user


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def admin_client(client, administrator):
    client.force_login(administrator)
    return client


def make_cr(registry, name, parent=None, **fields):
    return ConnectedRegistry.objects.create(registry=registry, parent=parent, name=name, **fields)


@pytest.fixture
def tree(registry):
    """zroot > (bchild > leafone), and aroot on its own (alphabetically first)."""
    zroot = make_cr(registry, "zroot", mode="ReadWrite", login_server="http://10.0.0.1:5000",
                    connection_state="Online", last_sync_at=T0, repositories=["hello-world", "acr/connected-registry"])
    bchild = make_cr(registry, "bchild", parent=zroot, sync_schedule="0 2 * * *", sync_window="PT3H",
                     connection_state="Unhealthy", repositories=["hello-world"])
    leaf = make_cr(registry, "leafone", parent=bchild, repositories=["hello-world"])
    aroot = make_cr(registry, "aroot", connection_state="Syncing", repositories=["tools/busybox"])
    return {"zroot": zroot, "bchild": bchild, "leafone": leaf, "aroot": aroot}


def list_url(registry, **query):
    url = reverse("connected_registry_list", args=[registry.name])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def detail_url(cr):
    return reverse("connected_registry_detail", args=[cr.registry.name, cr.name])


def body_rows(html, tbody_id="connected-registry-rows"):
    tbody = re.search(rf"<tbody( id=\"{tbody_id}\")?[^>]*>.*?</tbody>", html, re.S).group(0)
    return re.findall(r"<tr>(.*?)</tr>", tbody, re.S)


def row_names(html, tbody_id="connected-registry-rows"):
    return [m.group(1) for row in body_rows(html, tbody_id) if (m := re.search(r">(\w+)</a></th>", row))]


# --- login and roles -----------------------------------------------------------

@pytest.mark.parametrize("name,args", [
    ("home", []),
    ("status", []),
    ("connected_registry_list", ["myacrregistry"]),
    ("connected_registry_detail", ["myacrregistry", "zroot"]),
    ("connected_registry_create", ["myacrregistry"]),
])
def test_pages_require_login(client, tree, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_htmx_poll_after_logout_sends_the_page_to_login(client, registry):
    response = client.get(list_url(registry), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login"))


def test_login_then_logout(client, viewer, registry):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b'name="password"' in page.content

    bad = client.post(reverse("login"), {"username": "teamviewer", "password": "wrong"})
    assert bad.status_code == 200 and b"role=\"alert\"" in bad.content

    response = client.post(reverse("login"), {"username": "teamviewer", "password": "s3cret-pass"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200

    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_roles(django_user_model, administrator, viewer):
    from connected.views import is_administrator

    superuser = django_user_model.objects.create_user("root", password="x", is_superuser=True)
    staff = django_user_model.objects.create_user("support", password="x", is_staff=True)
    inactive = django_user_model.objects.create_user("gone", password="x", is_superuser=True, is_active=False)
    assert is_administrator(administrator) and is_administrator(superuser)
    # Support staff use the Django admin with their model permissions; in the pages they are viewers.
    assert not is_administrator(viewer) and not is_administrator(staff) and not is_administrator(inactive)


def test_header_names_the_role(admin_client, viewer, client, registry):
    assert "administrator</span>" in admin_client.get(reverse("home")).content.decode()
    client.force_login(viewer)
    assert "viewer</span>" in client.get(reverse("home")).content.decode()


# --- home ----------------------------------------------------------------------

def test_home_lists_registries_with_counts(viewer_client, tree):
    Registry.objects.create(name="otherregistry", login_server="http://127.0.0.1:5002")
    html = viewer_client.get(reverse("home")).content.decode()
    assert 'href="/registries/myacrregistry/connected-registries/"' in html
    assert "4 connected registries" in html and "0 connected registries" in html
    assert 'href="/status/"' in html


def test_home_empty_state(viewer_client):
    assert "No registries yet" in viewer_client.get(reverse("home")).content.decode()


# --- connected registries list ---------------------------------------------------

def test_list_shows_the_cli_columns_in_tree_order_with_badges(viewer_client, registry, tree):
    SyncRun.objects.create(connected_registry=tree["zroot"], status="failed", queued_at=T0)
    latest = SyncRun.objects.create(connected_registry=tree["zroot"], status="succeeded",
                                    queued_at=T0 + dt.timedelta(minutes=1))
    response = viewer_client.get(list_url(registry))
    assert response.status_code == 200
    html = response.content.decode()

    headers = re.findall(r'<th scope="col">([^<]+)</th>', html)
    assert headers == ["Name", "Mode", "Connection state", "Parent", "Login server", "Last sync (UTC)",
                       "Sync schedule", "Sync window", "Sync state"]
    assert row_names(html) == ["aroot", "zroot", "bchild", "leafone"]

    rows = dict(zip(row_names(html), body_rows(html)))
    assert 'style="--depth: 2"' in rows["leafone"] and 'style="--depth: 0"' in rows["zroot"]
    assert '<span class="badge state-online">Online</span>' in rows["zroot"]
    assert '<span class="badge state-unhealthy">Unhealthy</span>' in rows["bchild"]
    assert '<span class="badge state-offline">Offline</span>' in rows["leafone"]
    assert "ReadWrite" in rows["zroot"] and "http://10.0.0.1:5000" in rows["zroot"]
    assert "2024-05-06 07:08:09 UTC" in rows["zroot"] and "never" in rows["bchild"]
    assert '<td data-label="Parent">myacrregistry</td>' in rows["zroot"] and '<td data-label="Parent">zroot</td>' in rows["bchild"]
    assert f"/runs/{latest.pk}/" in rows["zroot"] and "run-succeeded" in rows["zroot"]
    assert "no runs" in rows["aroot"]
    assert '<td class="mono nowrap" data-label="Sync schedule">* * * * *</td>' in rows["zroot"]
    assert '<td class="mono" data-label="Sync window">-</td>' in rows["zroot"]


def test_list_htmx_returns_the_rows_partial_only(viewer_client, registry, tree):
    response = viewer_client.get(list_url(registry), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<tbody id="connected-registry-rows"')
    assert "<html" not in html and "<thead" not in html
    assert 'hx-trigger="every 5s"' in html
    assert row_names(html) == ["aroot", "zroot", "bchild", "leafone"]
    assert "HX-Request" in response["Vary"]


def test_full_list_page_polls_its_rows_and_keeps_the_filters(viewer_client, registry, tree):
    html = viewer_client.get(list_url(registry)).content.decode()
    assert "<html" in html and "htmx" in html
    assert f'hx-get="{list_url(registry)}" hx-trigger="every 5s"' in html
    html = viewer_client.get(list_url(registry, mode="ReadOnly")).content.decode()
    assert f'hx-get="{list_url(registry)}?mode=ReadOnly" hx-trigger="every 5s"' in html


@pytest.mark.parametrize("query,expected", [
    ({"mode": "ReadWrite"}, ["zroot"]),
    ({"mode": "ReadOnly"}, ["aroot", "bchild", "leafone"]),
    ({"state": "Unhealthy"}, ["bchild"]),
    ({"state": "Offline"}, ["leafone"]),
    ({"parent": "-"}, ["aroot", "zroot"]),
    ({"parent": "zroot"}, ["bchild"]),
    ({"q": "CHILD"}, ["bchild"]),
    ({"q": "busybox"}, ["aroot"]),
    ({"q": "hello", "mode": "ReadOnly"}, ["bchild", "leafone"]),
])
def test_list_filters_and_search(viewer_client, registry, tree, query, expected):
    html = viewer_client.get(list_url(registry, **query), headers={"HX-Request": "true"}).content.decode()
    assert row_names(html) == expected


def test_list_filter_choices(viewer_client, registry, tree):
    html = viewer_client.get(list_url(registry)).content.decode()
    for option in ("<option>ReadOnly</option>", "<option>ReadWrite</option>", "<option>Unhealthy</option>",
                   "<option>zroot</option>", "<option>bchild</option>", "myacrregistry (the registry)"):
        assert option in html
    assert "<option>leafone</option>" not in html  # no children: not a parent


def test_list_filter_without_match_says_so(viewer_client, registry, tree):
    html = viewer_client.get(list_url(registry, q="nothingmatches")).content.decode()
    assert "matches these filters" in html and "Show them all" in html


def test_list_empty_state_helps(viewer_client, registry):
    html = viewer_client.get(list_url(registry)).content.decode()
    assert "has no connected registries yet" in html
    assert "python manage.py acr connected-registry create --registry myacrregistry" in html
    assert "Create the first one" not in html


def test_list_empty_state_offers_the_form_to_administrators(admin_client, registry):
    html = admin_client.get(list_url(registry)).content.decode()
    assert "Create the first one" in html and reverse("connected_registry_create", args=[registry.name]) in html


def test_unknown_registry_is_404(viewer_client, registry):
    assert viewer_client.get("/registries/nosuchregistry/connected-registries/").status_code == 404


# --- status page ------------------------------------------------------------

def status_rows(html):
    return dict(zip(row_names(html, ""), body_rows(html, "")))


def test_status_page_shows_every_connected_registry(viewer_client, registry, tree):
    other = Registry.objects.create(name="aaaregistry", login_server="http://127.0.0.1:5009")
    make_cr(other, "elsewhere", repositories=["x"])
    now = timezone.now()
    ConnectedRegistry.objects.filter(pk=tree["zroot"].pk).update(last_sync_at=now - dt.timedelta(hours=3))
    SyncRun.objects.create(connected_registry=tree["zroot"], status="partial", tags_failed=2)
    SyncRun.objects.create(connected_registry=tree["aroot"], status="queued")

    response = viewer_client.get(reverse("status"))
    assert response.status_code == 200
    html = response.content.decode()
    assert row_names(html, "") == ["elsewhere", "aroot", "zroot", "bchild", "leafone"]
    rows = status_rows(html)
    assert '<span class="badge state-online">Online</span>' in rows["zroot"]
    assert "synced 3\xa0hours ago" in rows["zroot"] and "2 tags failed in the last run" in rows["zroot"]
    assert "lag-warn" in rows["zroot"]
    assert "never synced" in rows["aroot"] and "sync pending" in rows["aroot"]
    assert "continuous" in rows["zroot"]
    # bchild: "0 2 * * *" with PT3H: a window opens (or is open) at 02:00 UTC.
    assert re.search(r"(opens|open until) <time datetime=\"\d{4}-\d\d-\d\dT0[25]:00:00Z\">", rows["bchild"])
    assert 'hx-trigger="every 10s"' in html


def test_status_page_counts_the_changes_waiting(viewer_client, registry, tree):
    now = timezone.now()

    def waiting(cr, age, tag):
        SyncMessage.objects.create(connected_registry=cr, origin="registry myacrregistry", action="push",
                                   repository="hello-world", tag=tag, created_at=now - age,
                                   expires_at=now + dt.timedelta(days=1))

    waiting(tree["leafone"], dt.timedelta(seconds=30), "fresh")  # continuous, within the grace
    waiting(tree["zroot"], dt.timedelta(minutes=30), "a")  # continuous, late
    waiting(tree["zroot"], dt.timedelta(minutes=10), "b")
    waiting(tree["bchild"], dt.timedelta(seconds=10), "c")  # scheduled: waits for its window
    SyncMessage.objects.create(connected_registry=tree["aroot"], origin="x", action="push", repository="r",
                               tag="applied", created_at=now - dt.timedelta(hours=1),
                               expires_at=now + dt.timedelta(days=1), acknowledged_at=now)
    rows = status_rows(viewer_client.get(reverse("status")).content.decode())
    assert "1 change waiting" in rows["leafone"] and "the oldest" not in rows["leafone"]
    assert "2 changes waiting (the oldest for 30\xa0minutes)" in rows["zroot"] and "lag-warn" in rows["zroot"]
    assert "1 change waiting" in rows["bchild"]
    assert "waiting" not in rows["aroot"]


def test_status_page_shows_no_secret(viewer_client, registry):
    from connected import credentials

    cr = operations.create_connected_registry(registry, "factory01", ["hello-world"])
    password = credentials.generate_password(cr.sync_token, 1)["value"]
    html = viewer_client.get(reverse("status")).content.decode()
    assert password not in html and "SyncTokenPassword" not in html and "password" not in html.lower()


def test_status_page_empty_state(viewer_client):
    assert "No connected registries yet" in viewer_client.get(reverse("status")).content.decode()


def test_status_htmx_returns_the_live_partial(viewer_client, tree):
    html = viewer_client.get(reverse("status"), headers={"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="status-live"') and "<html" not in html


# --- constant queries with many rows --------------------------------------------

def populate_many(count: int) -> Registry:
    return populate_fleet(count, registry_name=f"registry{count}")


@pytest.mark.parametrize("page", ["list", "status"])
def test_list_and_status_issue_a_constant_number_of_queries(admin_client, django_assert_num_queries, page):
    """The same number of queries for 5 rows and for 500 (505 on the status page)."""
    def get(registry, expected_rows, queries=None):
        url = list_url(registry) if page == "list" else reverse("status")
        if queries is None:
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as ctx:
                response = admin_client.get(url)
            queries = len(ctx.captured_queries)
        else:
            with django_assert_num_queries(queries):
                response = admin_client.get(url)
        assert response.status_code == 200
        names = row_names(response.content.decode(), "connected-registry-rows" if page == "list" else "")
        assert len(names) == expected_rows
        return queries

    queries = get(populate_many(5), 5)
    get(populate_many(500), 500 if page == "list" else 505, queries)
