"""The pages in Debian's Chromium (headless, Playwright with the system
browser), against a live server: create through the form, an invalid cron
rejected in place, a password shown once, the status page following a real
sync, and a viewer who can reach no action."""
from __future__ import annotations

import os
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from connected import operations
from connected.models import ConnectedRegistry, SyncRun, Token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "s3cret-pass"


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is not installed: run ./scripts/test, which installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the tests make between browser steps are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def open_as(chromium, live_server, django_user_model):
    """open_as("administrator"|"viewer") -> a logged-in Playwright page."""
    contexts = []

    def login(role: str):
        user = django_user_model.objects.create_user(f"{role}user", password=PASSWORD)
        if role == "administrator":
            user.groups.add(Group.objects.get_or_create(name="Administrators")[0])
        context = chromium.new_context(base_url=live_server.url, timezone_id="Europe/Paris",
                                       viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto(reverse("login"))
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/$"))
        return page

    yield login
    for context in contexts:
        context.close()


@pytest.fixture
def registry():
    return operations.create_registry("myacrregistry", "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                      check_login_server=False)


def test_create_a_connected_registry_through_the_form(open_as, registry):
    page = open_as("administrator")
    page.goto(reverse("connected_registry_list", args=[registry.name]))
    page.get_by_role("link", name="Create the first one").click()
    page.fill("#id_name", "Factory01")
    page.select_option("#id_mode", "ReadWrite")
    page.fill("#id_repositories", "hello-world\napp/frontend")
    page.check("input[name=sync_type][value=scheduled]")
    page.fill("#id_sync_schedule", "0 12 * * *")
    page.fill("#id_sync_window", "PT4H")
    page.wait_for_selector("#feedback-schedule-create-form .cron-words")
    page.fill("#id_message_ttl", "P7D")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r".*/connected-registries/Factory01/$"))
    assert "Connected registry Factory01 created" in page.inner_text("main")
    cr = ConnectedRegistry.objects.get()
    assert (cr.mode, cr.repositories, cr.sync_schedule, cr.sync_window, cr.message_ttl) == \
        ("ReadWrite", ["hello-world", "app/frontend"], "0 12 * * *", "PT4H", "P7D")


def test_an_invalid_cron_is_rejected_in_place(open_as, registry):
    page = open_as("administrator")
    page.goto(reverse("connected_registry_create", args=[registry.name]))
    assert page.is_hidden("#id_sync_schedule")
    page.check("input[name=sync_type][value=scheduled]")
    page.fill("#id_sync_schedule", "0 99 * * *")
    feedback = page.locator("#feedback-schedule-create-form")
    feedback.get_by_text("hour value 99 is out of range 0-23").wait_for()
    assert "cron-preview" not in feedback.inner_html()
    assert page.url.endswith("/new/")  # nothing was submitted

    page.fill("#id_sync_schedule", "30 6 * * 1")
    feedback.get_by_text("At 06:30, only on Monday (UTC)").wait_for()
    page.wait_for_function("""() => [...document.querySelectorAll('#feedback-schedule-create-form time[data-local]')]
                               .every(t => !t.textContent.endsWith('Z'))""")
    # The next openings in UTC and, converted by the page, in the viewer's zone (Paris: +1 or +2 h).
    local = feedback.locator("time[data-local]").all_inner_texts()
    assert len(local) == 5 and all(re.search(r"0[78]:30", text) for text in local), local
    assert "Europe/Paris" in feedback.inner_text()
    page.get_by_role("button", name="Create").click()
    assert "at least one repository is required." in page.inner_text("main")
    assert not ConnectedRegistry.objects.exists()


def test_a_password_is_shown_once(open_as, registry):
    cr = operations.create_connected_registry(registry, "factory01", ["hello-world"])
    page = open_as("administrator")
    page.goto(reverse("connected_registry_detail", args=[registry.name, cr.name]))
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Generate password 1").click()
    password = page.locator("#new-password").inner_text()
    connection_string = page.locator("#new-connection-string").inner_text()
    assert f"SyncTokenPassword={password};" in connection_string
    assert Token.objects.get().verify_password(password) == 1
    assert "password1" in page.inner_text("#token-passwords")  # the slot list follows, without a value
    page.get_by_role("button", name="Close").click()
    assert page.locator("#new-password").count() == 0 and password not in page.content()
    page.reload()
    assert password not in page.content() and "password1" in page.inner_text("#cr-token")


@pytest.mark.registries
def test_the_status_page_follows_a_real_sync(open_as, parent_registry, child_registry):
    from connected.sync.runner import execute_run
    from devtools.images import ImageSpec, populate

    populate(parent_registry.host, [ImageSpec("hello-world", "1.0")])
    registry = operations.create_registry("myacrregistry", parent_registry.url, data_endpoint_enabled=True)
    cr = operations.create_connected_registry(registry, "factory01", ["hello-world"])
    page = open_as("viewer")
    page.goto(reverse("status"))
    row = page.locator("tr", has=page.get_by_role("link", name="factory01"))
    assert "Offline" in row.inner_text() and "never synced" in row.inner_text()

    ConnectedRegistry.objects.filter(pk=cr.pk).update(login_server=child_registry.url, activation_status="Active")
    run = SyncRun.objects.create(connected_registry=cr, trigger="manual")
    assert execute_run(run.pk).status == "succeeded"
    # The page refreshes itself (htmx, every 10 s): no reload.
    row.locator(".badge.state-online").wait_for(timeout=20000)
    assert "never synced" not in row.inner_text() and "ago" in row.inner_text()


def test_a_viewer_reaches_no_action(open_as, registry, live_server):
    cr = operations.create_connected_registry(registry, "factory01", ["hello-world"])
    page = open_as("viewer")
    for url in (reverse("connected_registry_list", args=[registry.name]),
                reverse("connected_registry_detail", args=[registry.name, cr.name]), reverse("status")):
        page.goto(url)
        assert page.locator("[hx-post], form[method=post]:not(.session), a.button").count() == 0, url
        for word in ("Sync now", "Generate password", "Delete", "Create", "Deactivate"):
            assert page.get_by_role("button", name=word).count() == 0
    # Even typed by hand, with the session's CSRF token, an action is refused.
    status = page.evaluate("""async (url) => {
        const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token},
                                    body: new URLSearchParams({password: '1'})});
        return r.status; }""", reverse("connected_registry_generate_password", args=[registry.name, cr.name]))
    assert status == 403
    response = page.goto(reverse("connected_registry_create", args=[registry.name]))
    assert response.status == 403 and "Only administrators" in page.inner_text("main")
    assert not Token.objects.get().password1_hash


def test_an_events_secret_is_shown_once(open_as, registry):
    from connected.messages import EventSource

    cr = operations.create_connected_registry(registry, "factory01", ["hello-world"], mode="ReadWrite")
    page = open_as("administrator")
    page.on("dialog", lambda dialog: dialog.accept())
    # The registry's card on the home page.
    card = page.locator(f"#registry-events-{registry.pk}")
    card.get_by_text("Events: not wired").wait_for()
    card.get_by_role("button", name="Generate events secret").click()
    secret = page.locator(f"#events-secret-reg{registry.pk}").inner_text()
    assert EventSource.authenticate(secret).connected_registry is None
    assert f"Bearer {secret}" in page.locator(f"#events-notifications-reg{registry.pk}").inner_text()
    assert page.locator(f"[data-copy='#events-secret-reg{registry.pk}']").is_visible()
    assert "secret set, no event received with it yet" in card.inner_text()
    # The connected registry's page: how changes reach it, then its own secret.
    page.goto(reverse("connected_registry_detail", args=[registry.name, cr.name]))
    section = page.locator("#cr-events")
    section.get_by_text("no events wired: the portal compares in full every").wait_for()
    section.get_by_role("button", name="Generate events secret").click()
    secret = page.locator(f"#events-secret-cr{cr.pk}").inner_text()
    assert EventSource.authenticate(secret).connected_registry == cr
    assert page.locator(f"[data-copy='#events-header-cr{cr.pk}']").is_visible()
    # Relied on only once an event came with it: until then the portal keeps polling.
    assert "Events from" in section.inner_text() and "secret set, no event received with it yet" in \
        section.inner_text()
    assert "no events wired: the portal compares in full every" in section.inner_text()
    page.reload()
    section.get_by_text("secret set, no event received with it yet").wait_for()
    assert secret not in page.content() and page.locator(".one-time").count() == 0
