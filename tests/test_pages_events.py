"""Events secrets in the pages: the events line of a registry (home page) and
the events section of a connected registry (its page, with how changes
reach it); an administrator's "Generate events secret" answered once (the
secret, the header, the notifications block), working at POST /events/ and
replacing the previous one; audited without the secret; viewers see the
lines and reach no action."""
from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from connected import operations
from connected.messages import EventSource, SyncMessage
from connected.models import AuditEvent
from connected.tokenservice.registry_config import notifications_block
from connected.views.events import interval_text

from tests.test_pages import admin_client, administrator, registry, viewer, viewer_client  # noqa: F401

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
ENVELOPE = json.dumps({"events": [{"id": "x", "action": "push", "target": {
    "repository": "hello-world", "tag": "1.0", "mediaType": "application/vnd.oci.image.manifest.v1+json"}}]})


@pytest.fixture(autouse=True)
def intervals(settings):
    settings.PORTAL = {**settings.PORTAL, "CONTINUOUS_SYNC_INTERVAL_SECONDS": 30.0,
                       "FULL_COMPARISON_INTERVAL_SECONDS": 600.0}


@pytest.fixture
def cr(registry):
    return operations.create_connected_registry(registry, "factory01", ["hello-world"], mode="ReadWrite")


def cr_url(name, cr):
    return reverse(name, args=[cr.registry.name, cr.name])


def post_events(client, secret):
    return client.post("/events/", ENVELOPE, content_type="application/vnd.docker.distribution.events.v1+json",
                       HTTP_AUTHORIZATION=f"Bearer {secret}")


def shown(page: str, what: str, key: str) -> str:
    """The text of the one-time box's <code id="events-WHAT-KEY">."""
    match = re.search(rf'<code id="events-{what}-{key}"[^>]*>([^<]+)</code>', page)
    assert match, f"events-{what}-{key} not in the answer"
    return html.unescape(match.group(1))


def generate_for_registry(client, registry):
    response = client.post(reverse("registry_events_secret", args=[registry.name]), headers=HX)
    assert response.status_code == 200
    return response, shown(response.content.decode(), "secret", f"reg{registry.pk}")


def generate_for_cr(client, cr):
    response = client.post(cr_url("connected_registry_events_secret", cr), headers=HX)
    assert response.status_code == 200
    return response, shown(response.content.decode(), "secret", f"cr{cr.pk}")


def registry_line(client, registry) -> str:
    return client.get(reverse("registry_events", args=[registry.name]), headers=HX).content.decode()


def cr_section(client, cr) -> str:
    return client.get(cr_url("connected_registry_events", cr), headers=HX).content.decode()


def text(page: str) -> str:
    """The words of a piece of page (tags as spaces, none inside brackets)."""
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    return re.sub(r"\s+([),])", r"\1", re.sub(r"\(\s+", "(", words))


# --- the pages load the sections ---------------------------------------------------

def test_the_pages_render_their_events_sections_with_the_page(admin_client, registry, cr):
    home = admin_client.get(reverse("home")).content.decode()
    assert f'id="registry-events-{registry.pk}"' in home and "Events: not wired" in text(home)
    detail = admin_client.get(cr_url("connected_registry_detail", cr)).content.decode()
    assert 'id="cr-events"' in detail and "How changes reach it" in text(detail)


def test_the_sections_without_htmx_lead_to_their_page(admin_client, registry, cr):
    assert admin_client.get(reverse("registry_events", args=[registry.name])).url == reverse("home")
    assert admin_client.get(cr_url("connected_registry_events", cr)).url == cr_url("connected_registry_detail", cr)


def test_the_sections_need_a_login(client, registry, cr):
    response = client.get(reverse("registry_events", args=[registry.name]))
    assert response.status_code == 302 and "/login/" in response.url
    response = client.post(reverse("registry_events_secret", args=[registry.name]))
    assert response.status_code == 302 and not EventSource.objects.exists()


# --- status lines ------------------------------------------------------------------

def test_registry_line_not_wired_wired_received(viewer_client, registry):
    assert "Events: not wired" in text(registry_line(viewer_client, registry))
    source, _ = EventSource.generate(registry)
    assert "Events: secret set, no event received with it yet" in text(registry_line(viewer_client, registry))
    source.created_at = timezone.now() - dt.timedelta(days=2)
    source.last_event_at = timezone.now() - dt.timedelta(hours=3, minutes=2)
    source.save()
    line = text(registry_line(viewer_client, registry))
    stamp = timezone.localtime(source.last_event_at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert f"Events: received 3 hours ago ({stamp} UTC)" in line
    # A new secret: the registry's last event came with the old one.
    EventSource.generate(registry)
    assert "Events: secret set, no event received with it yet (the last event came 3 hours ago, with an earlier " \
           "secret)" in text(registry_line(viewer_client, registry))


def test_a_connected_registry_source_is_not_the_registry_line(viewer_client, registry, cr):
    EventSource.generate(registry, cr)
    assert "Events: not wired" in text(registry_line(viewer_client, registry))
    assert "secret set, no event received with it yet" in text(cr_section(viewer_client, cr))


def test_cr_section_states(viewer_client, registry, cr):
    assert "Events from factory01 not wired" in text(cr_section(viewer_client, cr))
    source, _ = EventSource.generate(registry, cr)
    assert "Events from factory01 secret set, no event received with it yet" in text(cr_section(viewer_client, cr))
    EventSource.objects.filter(pk=source.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5),
                                                    last_event_at=timezone.now() - dt.timedelta(seconds=5))
    assert "Events from factory01 received less than a minute ago (" in text(cr_section(viewer_client, cr))


def delivering(source):
    """As if the registry's first event with this secret had arrived."""
    EventSource.objects.filter(pk=source.pk).update(last_event_at=source.created_at)


def test_how_changes_reach_a_continuous_read_write_registry(viewer_client, registry, cr):
    section = text(cr_section(viewer_client, cr))
    assert "How changes reach it no events wired: the portal compares in full every 30 s" in section
    assert "(no events received yet from registry myacrregistry, factory01 itself)" in section
    assert "ReadWrite: pushes made at it reach the portal" in section
    source, _ = EventSource.generate(registry)
    # A secret that no event came with yet is not relied on: still polled.
    assert "(no events received yet from registry myacrregistry, factory01 itself)" in \
        text(cr_section(viewer_client, cr))
    delivering(source)
    section = text(cr_section(viewer_client, cr))
    assert "no events wired: the portal compares in full every 30 s (no events received yet from factory01 " \
           "itself)" in section
    delivering(EventSource.generate(registry, cr)[0])
    section = text(cr_section(viewer_client, cr))
    assert "changes arrive as sync messages (safety-net full comparison every 10 min)" in section
    assert "no events received yet from" not in section


def test_how_changes_reach_read_only_and_scheduled_registries(viewer_client, registry, cr, settings):
    child = operations.create_connected_registry(registry, "floor0001", ["hello-world"], parent=cr)
    section = text(cr_section(viewer_client, child))
    # A ReadOnly child of a ReadWrite parent needs the parent's events, not its own.
    assert "no events wired: the portal compares in full every 30 s (no events received yet from its parent " \
           "factory01)" in section
    assert f'href="{cr_url("connected_registry_detail", cr)}"' in cr_section(viewer_client, child)
    assert "ReadOnly: it changes only through its sync" in section
    delivering(EventSource.generate(registry, cr)[0])
    assert "changes arrive as sync messages (safety-net full comparison every 10 min)" in \
        text(cr_section(viewer_client, child))

    store = operations.create_connected_registry(registry, "store0042", ["hello-world"],
                                                 sync_schedule="0 2 * * *", sync_window="PT2H")
    assert "no events wired: each sync window opens with a full comparison" in text(cr_section(viewer_client, store))
    delivering(EventSource.generate(registry)[0])
    assert "changes arrive as sync messages, applied in its sync window" in text(cr_section(viewer_client, store))

    settings.PORTAL = {**settings.PORTAL, "FULL_COMPARISON_INTERVAL_SECONDS": 90.0}
    assert "safety-net full comparison every 90 s" in text(cr_section(viewer_client, child))


def test_interval_text():
    assert [interval_text(s) for s in (30, 60, 90, 600.0, 3600)] == ["30 s", "1 min", "90 s", "10 min", "60 min"]


# --- generation: shown once, works, replaces, audited ------------------------------------------------

def test_admin_generates_a_registry_secret_shown_once_that_works(admin_client, client, registry, cr):
    line = registry_line(admin_client, registry)
    assert "Generate events secret" in line and "It is shown once" in line
    response, secret = generate_for_registry(admin_client, registry)
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    key = f"reg{registry.pk}"
    assert shown(page, "header", key) == f"Authorization: Bearer {secret}"
    block = shown(page, "notifications", key)
    assert block.startswith("notifications:\n  {")
    assert json.loads(block.removeprefix("notifications:")) == notifications_block(secret)
    # Copy buttons for the three, and the status line follows in the same answer.
    for what in ("secret", "header", "notifications"):
        assert f'data-copy="#events-{what}-{key}"' in page
    assert "Events: secret set, no event received with it yet" in text(page)

    assert post_events(client, secret).status_code == 200
    assert "Events: received less than a minute ago" in text(registry_line(admin_client, registry))
    # hello-world pushed at the registry: a message for its child factory01.
    assert SyncMessage.objects.filter(connected_registry=cr, direction="down").count() == 1

    # Never again: not in the line, the home page, the session or the audit trail.
    assert secret not in registry_line(admin_client, registry)
    assert secret not in admin_client.get(reverse("home")).content.decode()
    assert secret not in str(dict(admin_client.session))
    audit = AuditEvent.objects.get(action="registry.generateEventsSecret")
    assert (audit.actor, audit.source, audit.object_name, audit.registry_name) == \
        ("opsadmin", "web", "myacrregistry", "myacrregistry")
    assert secret not in str(list(AuditEvent.objects.values()))


def test_regenerating_replaces_the_old_secret(admin_client, client, registry):
    _, old = generate_for_registry(admin_client, registry)
    line = registry_line(admin_client, registry)
    assert "It replaces the current one at once: the registry's events are refused until its config has " \
           "the new one." in line
    _, new = generate_for_registry(admin_client, registry)
    assert new != old
    assert post_events(client, old).status_code == 401
    assert post_events(client, new).status_code == 200
    assert EventSource.objects.count() == 1
    assert AuditEvent.objects.filter(action="registry.generateEventsSecret", source="web").count() == 2


def test_admin_generates_a_connected_registry_secret(admin_client, client, registry, cr):
    section = cr_section(admin_client, cr)
    assert "Generate events secret" in section
    response, secret = generate_for_cr(admin_client, cr)
    page = response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert shown(page, "header", f"cr{cr.pk}") == f"Authorization: Bearer {secret}"
    assert "New events secret of connected registry factory01" in page
    assert "Events from factory01 secret set, no event received with it yet" in text(page)

    # A push at the ReadWrite factory01 goes up: its own message.
    assert post_events(client, secret).status_code == 200
    assert SyncMessage.objects.filter(connected_registry=cr, direction="up").count() == 1
    assert EventSource.objects.get().connected_registry == cr

    _, new = generate_for_cr(admin_client, cr)
    assert post_events(client, secret).status_code == 401
    assert "It replaces the current one at once" in cr_section(admin_client, cr)
    detail = admin_client.get(cr_url("connected_registry_detail", cr)).content.decode()
    for later in (cr_section(admin_client, cr), detail):
        assert secret not in later and new not in later
    audits = AuditEvent.objects.filter(action="connectedRegistry.generateEventsSecret")
    assert [(a.actor, a.source, a.object_name) for a in audits] == [("opsadmin", "web", "factory01")] * 2
    assert new not in str(list(AuditEvent.objects.values())) and secret not in str(list(AuditEvent.objects.values()))


def test_a_plain_post_answers_a_page_of_its_own(admin_client, registry, cr):
    response = admin_client.post(cr_url("connected_registry_events_secret", cr))
    page = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert "<h1>Events secret of connected registry factory01</h1>" in page
    assert EventSource.authenticate(shown(page, "secret", f"cr{cr.pk}")).connected_registry == cr
    assert f'href="{cr_url("connected_registry_detail", cr)}"' in page


def test_the_secret_is_not_logged(admin_client, registry, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        _, secret = generate_for_registry(admin_client, registry)
    assert secret not in caplog.text


# --- viewers and the action's guards ----------------------------------------------------

def test_viewer_sees_the_lines_but_no_action(viewer_client, registry, cr):
    EventSource.generate(registry)
    for page in (registry_line(viewer_client, registry), cr_section(viewer_client, cr)):
        assert "Generate events secret" not in page and "hx-post" not in page
    assert reverse("registry_events_secret", args=[registry.name]) not in registry_line(viewer_client, registry)
    assert "Events: secret set, no event received with it yet" in text(registry_line(viewer_client, registry))
    assert "How changes reach it" in text(cr_section(viewer_client, cr))


@pytest.mark.parametrize("which", ["registry", "cr"])
def test_viewer_gets_403_and_nothing_changes(viewer_client, registry, cr, which):
    EventSource.generate(registry)
    before = list(EventSource.objects.values())
    url = reverse("registry_events_secret", args=[registry.name]) if which == "registry" \
        else cr_url("connected_registry_events_secret", cr)
    assert viewer_client.post(url, headers=HX).status_code == 403
    assert viewer_client.post(url).status_code == 403
    assert list(EventSource.objects.values()) == before
    assert not AuditEvent.objects.filter(action__endswith="generateEventsSecret").exists()


@pytest.mark.parametrize("which", ["registry", "cr"])
def test_the_actions_are_post_only_and_check_csrf(admin_client, administrator, registry, cr, which):
    from django.test import Client

    url = reverse("registry_events_secret", args=[registry.name]) if which == "registry" \
        else cr_url("connected_registry_events_secret", cr)
    assert admin_client.get(url).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(administrator)
    assert strict.post(url, headers=HX).status_code == 403
    assert not EventSource.objects.exists()


def test_unknown_names_are_404(admin_client, registry):
    assert admin_client.post(reverse("registry_events_secret", args=["nosuchregistry"])).status_code == 404
    assert admin_client.post(reverse("connected_registry_events_secret",
                                     args=[registry.name, "nosuchone"])).status_code == 404
    assert not EventSource.objects.exists()
