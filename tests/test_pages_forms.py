"""The create form, its as-you-type checks, and editing sync properties and
repositories in place. Every rule comes from connected.validation through the
operations: these tests check that its messages reach the right field."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from connected import operations
from connected.models import AuditEvent, ConnectedRegistry

from tests.test_pages import admin_client, administrator, registry, viewer, viewer_client  # noqa: F401

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def create_url(registry):
    return reverse("connected_registry_create", args=[registry.name])


def check(client, registry, group, **data):
    url = reverse("connected_registry_create_check", args=[registry.name, group])
    response = client.get(url, data, headers=HX)
    assert response.status_code == 200
    return response.content.decode()


def errors(html):
    return [e.replace("&#x27;", "'") for e in re.findall(r'class="field-error">([^<]*)<', html)]


# --- create --------------------------------------------------------------------

def test_create_form_shows_every_field(admin_client, registry):
    operations.create_connected_registry(registry, "factory01", ["hello-world"])
    html = admin_client.get(create_url(registry)).content.decode()
    for name in ("name", "mode", "parent", "repositories", "sync_type", "sync_schedule", "sync_window",
                 "message_ttl"):
        assert f'name="{name}"' in html
    assert '<option value="factory01">factory01</option>' in html
    assert "myacrregistry (the registry)" in html and 'value="P2D"' in html


def test_create_continuous(admin_client, registry):
    response = admin_client.post(create_url(registry), {
        "name": "Factory01", "mode": "ReadWrite", "parent": "", "repositories": "hello-world\nApp/Frontend, tools/busybox",
        "sync_type": "continuous", "sync_schedule": "", "sync_window": "", "message_ttl": "P7D"})
    cr = ConnectedRegistry.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "connected_registry_detail", args=["myacrregistry", "Factory01"])
    assert (cr.name, cr.mode, cr.repositories, cr.sync_schedule, cr.sync_window, cr.message_ttl) == \
        ("Factory01", "ReadWrite", ["hello-world", "app/frontend", "tools/busybox"], "* * * * *", None, "P7D")
    assert cr.sync_token.name == "Factory01-sync-token"
    event = AuditEvent.objects.get(action="connectedRegistry.create")
    assert (event.actor, event.source) == ("opsadmin", "web")


def test_create_scheduled_nested_warns_about_the_runtime_image(admin_client, registry):
    operations.create_connected_registry(registry, "factory01", ["hello-world"])
    response = admin_client.post(create_url(registry), {
        "name": "floor0001", "mode": "ReadOnly", "parent": "factory01", "repositories": "app/backend",
        "sync_type": "scheduled", "sync_schedule": "0 12 * * *", "sync_window": "PT4H", "message_ttl": "P2D"},
        follow=True)
    cr = ConnectedRegistry.objects.get(name="floor0001")
    assert (cr.parent.name, cr.sync_schedule, cr.sync_window) == ("factory01", "0 12 * * *", "PT4H")
    assert "app/backend" in ConnectedRegistry.objects.get(name="factory01").repositories
    html = response.content.decode()
    assert "do not all sync &#x27;acr/connected-registry&#x27;" in html


def test_create_errors_are_shown_by_field_and_nothing_is_stored(admin_client, registry):
    response = admin_client.post(create_url(registry), {
        "name": "x", "mode": "ReadOnly", "repositories": "Bad Repo!", "sync_type": "scheduled",
        "sync_schedule": "0 99 * * *", "sync_window": "PT1H", "message_ttl": "P100D"})
    assert response.status_code == 422
    html = response.content.decode()
    found = errors(html)
    assert "'x' is not a valid name: use 5 to 50 letters and digits, starting with a letter." in found
    assert any("is not a valid repository name" in e for e in found)
    assert "'0 99 * * *': hour value 99 is out of range 0-23." in found
    assert "'P100D' is out of range: it must be at least P1D and at most P90D." in found
    assert "This field cannot be blank." not in html
    assert 'value="0 99 * * *"' in html  # what was typed stays
    assert not ConnectedRegistry.objects.exists()


def test_create_refuses_a_readwrite_child_of_a_readonly_parent(admin_client, registry):
    operations.create_connected_registry(registry, "factory01", ["hello-world"])
    response = admin_client.post(create_url(registry), {"name": "floor0001", "mode": "ReadWrite",
                                                        "parent": "factory01", "repositories": "hello-world"})
    assert response.status_code == 422
    assert "a ReadOnly parent can only have ReadOnly children." in errors(response.content.decode())


def test_create_registry_level_errors_are_shown_above_the_form(admin_client, registry):
    operations.update_registry(registry, data_endpoint_enabled=False)
    response = admin_client.post(create_url(registry), {"name": "factory01", "repositories": "hello-world"})
    assert response.status_code == 422
    assert "the data endpoint of registry &#x27;myacrregistry&#x27; is disabled" in response.content.decode()


# --- as-you-type checks -----------------------------------------------------------

def test_check_cron_in_words_with_the_next_five_openings(admin_client, registry):
    html = check(admin_client, registry, "schedule", sync_type="scheduled", sync_schedule="30 2 * * 1-5",
                 sync_window="PT2H")
    assert errors(html) == []
    assert "At 02:30, Monday through Friday (UTC)" in html
    utc = re.findall(r'<time datetime="(\S+T02:30:00Z)">\w{3} \S+ 02:30 UTC</time>', html)
    local = re.findall(r'<time data-local datetime="(\S+)">', html)
    assert len(utc) == 5 and local == utc
    assert "Next 5 window openings (PT2H each)" in html and "data-tz-name" in html


@pytest.mark.parametrize("cron,message", [
    ("0 99 * * *", "hour value 99 is out of range 0-23"),
    ("0 12 * *", "has 4 fields"),
    ("0 0 31 2 *", "never occurs"),
])
def test_check_invalid_cron(admin_client, registry, cron, message):
    html = check(admin_client, registry, "schedule", sync_type="scheduled", sync_schedule=cron, sync_window="PT1H")
    assert any(message in e for e in errors(html)) and "cron-preview" not in html


@pytest.mark.parametrize("window,ok", [("PT59M", False), ("PT1H", True), ("P7D", True), ("P8D", False),
                                       ("4 hours", False)])
def test_check_window_range(admin_client, registry, window, ok):
    html = check(admin_client, registry, "schedule", sync_type="scheduled", sync_schedule="0 12 * * *",
                 sync_window=window)
    assert (errors(html) == []) == ok
    if not ok:
        assert window in errors(html)[0]


def test_check_window_is_checked_even_while_the_cron_is_wrong(admin_client, registry):
    html = check(admin_client, registry, "schedule", sync_type="scheduled", sync_schedule="0 99 * * *",
                 sync_window="P8D")
    assert len(errors(html)) == 2 and "'P8D' is out of range" in errors(html)[1]


@pytest.mark.parametrize("ttl,ok", [("PT23H", False), ("P1D", True), ("P90D", True), ("P91D", False)])
def test_check_ttl_range(admin_client, registry, ttl, ok):
    html = check(admin_client, registry, "message_ttl", message_ttl=ttl)
    assert (errors(html) == []) == ok


def test_check_continuous_needs_no_window(admin_client, registry):
    html = check(admin_client, registry, "schedule", sync_type="continuous", sync_window="P99D")
    assert errors(html) == [] and "Continuous sync" in html


def test_check_name_and_uniqueness(admin_client, registry):
    operations.create_connected_registry(registry, "factory01", ["hello-world"])
    assert "is not a valid name" in errors(check(admin_client, registry, "name", name="1abc"))[0]
    assert "already exists" in errors(check(admin_client, registry, "name", name="FACTORY01"))[0]
    assert errors(check(admin_client, registry, "name", name="factory02")) == []


def test_check_placement_warns_about_the_runtime_image_and_the_mode(admin_client, registry):
    operations.create_connected_registry(registry, "factory01", ["hello-world"])
    html = check(admin_client, registry, "placement", name="floor0001", mode="ReadWrite", parent="factory01")
    assert errors(html) == ["a ReadOnly parent can only have ReadOnly children."]
    assert "do not all sync &#x27;acr/connected-registry&#x27; (missing in: factory01)" in html
    operations.change_repositories(ConnectedRegistry.objects.get(), add=["acr/connected-registry"])
    html = check(admin_client, registry, "placement", name="floor0001", mode="ReadOnly", parent="factory01")
    assert errors(html) == [] and "Warning" not in html


def test_check_repositories(admin_client, registry):
    assert "listed more than once" in errors(check(admin_client, registry, "repositories",
                                                   repositories="a/b A/B"))[0]
    assert errors(check(admin_client, registry, "repositories", repositories="a/b, c")) == []


def test_viewers_cannot_reach_the_form_or_the_checks(viewer_client, registry):
    assert viewer_client.get(create_url(registry)).status_code == 403
    assert viewer_client.post(create_url(registry), {"name": "factory01", "repositories": "x"}).status_code == 403
    url = reverse("connected_registry_create_check", args=[registry.name, "name"])
    assert viewer_client.get(url, {"name": "abcde"}).status_code == 403
    assert not ConnectedRegistry.objects.exists()


# --- sync properties and repositories in place ----------------------------------

@pytest.fixture
def cr(registry):
    return operations.create_connected_registry(registry, "factory01", ["hello-world"])


def props_url(cr):
    return reverse("connected_registry_properties", args=[cr.registry.name, cr.name])


def test_detail_shows_the_sync_properties_form_with_current_values(admin_client, cr):
    operations.update_connected_registry(cr, sync_schedule="0 3 * * *", sync_window="PT2H")
    html = admin_client.get(reverse("connected_registry_detail", args=[cr.registry.name, cr.name])).content.decode()
    assert 'value="scheduled"' in html and 'value="0 3 * * *"' in html and 'value="PT2H"' in html
    url = reverse("connected_registry_update_check", args=[cr.registry.name, cr.name, "schedule"])
    assert f'hx-get="{url}"' in html


def test_edit_sync_properties_in_place(admin_client, cr):
    response = admin_client.post(props_url(cr), {"sync_type": "scheduled", "sync_schedule": "0 12 * * *",
                                                 "sync_window": "PT4H", "message_ttl": "P7D",
                                                 "log_level": "Warning"}, headers=HX)
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section id="cr-properties"')
    cr.refresh_from_db()
    assert (cr.sync_schedule, cr.sync_window, cr.message_ttl, cr.log_level) == \
        ("0 12 * * *", "PT4H", "P7D", "Warning")
    assert "Sync properties saved." in html and "<code>0 12 * * *</code>" in html
    assert AuditEvent.objects.filter(action="connectedRegistry.update", source="web").exists()


def test_edit_sync_properties_errors_in_place(admin_client, cr):
    response = admin_client.post(props_url(cr), {"sync_type": "scheduled", "sync_schedule": "61 * * * *",
                                                 "sync_window": "PT1H", "message_ttl": "P2D"}, headers=HX)
    assert response.status_code == 422
    html = response.content.decode()
    assert "minute value 61 is out of range 0-59" in html and "<details class=\"edit\" open>" in html
    cr.refresh_from_db()
    assert cr.sync_schedule == "* * * * *"


def test_without_javascript_errors_come_back_on_the_page_and_success_as_a_message(admin_client, cr):
    # A plain POST (the forms' action=, for browsers without JavaScript).
    bad = {"sync_type": "scheduled", "sync_schedule": "99 * * * *", "sync_window": "1h", "message_ttl": "P2D"}
    response = admin_client.post(props_url(cr), bad)
    assert response.status_code == 422
    html = response.content.decode().replace("&#x27;", "'")
    assert html.lstrip().lower().startswith("<!doctype html>") and "<h1" in html
    assert "minute value 99 is out of range 0-59" in html and "'1h' is not an ISO 8601 duration" in html
    assert 'value="99 * * * *"' in html and "<details class=\"edit\" open>" in html  # what was typed, to fix
    response = admin_client.post(repos_url(cr), {"add": "bad/../x"})
    assert response.status_code == 422 and "is not a valid repository name" in response.content.decode()
    cr.refresh_from_db()
    assert (cr.sync_schedule, cr.sync_window, cr.repositories) == ("* * * * *", None, ["hello-world"])

    good = {"sync_type": "scheduled", "sync_schedule": "0 12 * * *", "sync_window": "PT4H", "message_ttl": "P2D"}
    response = admin_client.post(props_url(cr), good, follow=True)
    assert response.redirect_chain[-1][0] == reverse("connected_registry_detail", args=[cr.registry.name, cr.name])
    assert "Sync properties saved." in response.content.decode()
    response = admin_client.post(repos_url(cr), {"add": "app/frontend"}, follow=True)
    assert "Added app/frontend." in response.content.decode()


def test_an_emptied_field_is_refused_and_the_same_values_change_nothing(admin_client, cr):
    response = admin_client.post(props_url(cr), {"sync_type": "continuous", "message_ttl": "", "log_level": ""},
                                 headers=HX)
    assert response.status_code == 422
    html = response.content.decode().replace("&#x27;", "'")
    assert "'' is not an ISO 8601 duration" in html and "'' is not a valid log level" in html
    cr.refresh_from_db()
    assert (cr.message_ttl, cr.log_level) == ("P2D", "Information")
    same = {"sync_type": "continuous", "message_ttl": "P2D", "log_level": "Information"}
    html = admin_client.post(props_url(cr), same, headers=HX).content.decode()
    assert "Nothing changed: these are the stored values." in html
    assert not AuditEvent.objects.filter(action="connectedRegistry.update").exists()


def test_update_check_uses_the_connected_registry(admin_client, cr):
    url = reverse("connected_registry_update_check", args=[cr.registry.name, cr.name, "schedule"])
    html = admin_client.get(url, {"sync_type": "scheduled", "sync_schedule": "0 6 * * *", "sync_window": "P9D"},
                            headers=HX).content.decode()
    assert "'P9D' is out of range" in html.replace("&#x27;", "'")


def repos_url(cr):
    return reverse("connected_registry_repositories", args=[cr.registry.name, cr.name])


def test_add_and_remove_repositories_in_place(admin_client, cr):
    response = admin_client.post(repos_url(cr), {"add": "app/frontend App/Backend"}, headers=HX)
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section id="cr-repositories"')
    assert "<code>app/backend</code>" in html and "Repositories (3)" in html
    response = admin_client.post(repos_url(cr), {"remove": "hello-world"}, headers=HX)
    cr.refresh_from_db()
    assert cr.repositories == ["app/frontend", "app/backend"]
    assert "Removed hello-world." in response.content.decode()


def test_repository_errors_in_place(admin_client, cr):
    response = admin_client.post(repos_url(cr), {"add": "hello-world"}, headers=HX)
    assert response.status_code == 422
    assert "already synced by" in response.content.decode()
    response = admin_client.post(repos_url(cr), {"remove": "hello-world"}, headers=HX)
    assert "must sync at least one repository" in response.content.decode()
    cr.refresh_from_db()
    assert cr.repositories == ["hello-world"]
