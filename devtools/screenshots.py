"""Screenshots of the main pages into docs/screenshots/, for the README.

    .venv/bin/python devtools/screenshots.py

Starts the portal in-process on a free port (temporary SQLite database,
made-up data: no registry is contacted), drives Debian's Chromium headless
with Playwright (the system browser; never `playwright install`), and saves
desktop and phone-width PNGs.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "screenshot-pass"
# True once portal.js has put every <time data-local> in the viewer's zone.
LOCALIZED = """() => [...document.querySelectorAll('time[data-local]')]
                     .every(t => t.textContent && !t.textContent.endsWith('Z'))"""


def setup(data_dir: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["PORTAL_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_portal.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop here
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def make_data() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from connected import operations
    from connected.messages import EventSource
    from connected.models import ConnectedRegistry, SyncRun

    now = timezone.now()
    users = get_user_model().objects
    admin = users.create_user("alice", password=PASSWORD)
    admin.groups.add(Group.objects.get_or_create(name="Administrators")[0])
    users.create_user("teamviewer", password=PASSWORD)

    registry = operations.create_registry("myacrregistry", "http://127.0.0.1:5001", data_endpoint_enabled=True,
                                          check_login_server=False)
    create = operations.create_connected_registry
    factory = create(registry, "factory01", ["hello-world", "acr/connected-registry", "app/frontend"],
                     mode="ReadWrite")
    floor = create(registry, "floor0001", ["hello-world", "acr/connected-registry"], parent=factory)
    line = create(registry, "line00001", ["hello-world"], parent=floor, sync_schedule="0 2 * * *",
                  sync_window="PT4H")
    store = create(registry, "store0042", ["app/frontend", "tools/busybox"], sync_schedule="30 22 * * 1-5",
                   sync_window="PT2H", message_ttl="P7D")
    edge = create(registry, "edgesite7", ["tools/busybox"])
    states = {factory: ("Online", "http://10.0.1.10:5000", 4), floor: ("Syncing", "http://10.0.2.10:5000", 30),
              line: ("Offline", "", None), store: ("Unhealthy", "http://10.0.9.42:5000", 26 * 60),
              edge: ("Online", "http://10.7.0.2:5000", 12)}
    for cr, (state, url, minutes) in states.items():
        ConnectedRegistry.objects.filter(pk=cr.pk).update(
            connection_state=state, login_server=url, activation_status="Active" if url else "Inactive",
            last_sync_at=now - dt.timedelta(minutes=minutes) if minutes else None,
            last_activity_at=now - dt.timedelta(minutes=1) if url else None)
    ConnectedRegistry.objects.filter(pk=store.pk).update(status_details=[{
        "type": "Sync", "code": "SyncFailed", "description": "GET http://10.0.9.42:5000/v2/: connection refused",
        "timestamp": (now - dt.timedelta(minutes=3)).isoformat()}])
    for cr in states:
        SyncRun.objects.create(connected_registry=cr, trigger="schedule", status="succeeded",
                               queued_at=now - dt.timedelta(hours=2), started_at=now - dt.timedelta(hours=2),
                               finished_at=now - dt.timedelta(hours=2) + dt.timedelta(seconds=41), tags_planned=12,
                               tags_done=12, tags_copied=4, tags_skipped=8, bytes_planned=180 * 2**20,
                               bytes_moved=180 * 2**20)
    SyncRun.objects.create(connected_registry=store, trigger="schedule", status="partial",
                           queued_at=now - dt.timedelta(minutes=5), started_at=now - dt.timedelta(minutes=5),
                           finished_at=now - dt.timedelta(minutes=4), tags_planned=6, tags_done=6, tags_copied=4,
                           tags_failed=2, bytes_moved=64 * 2**20, error="2 tags failed")
    # The registry and the ReadWrite factory01 send their events (so floor0001's changes arrive as messages).
    for source_of in (None, factory):
        source, _ = EventSource.generate(registry, source_of)
        EventSource.objects.filter(pk=source.pk).update(created_at=now - dt.timedelta(days=3),
                                                        last_event_at=now - dt.timedelta(minutes=7))
    SyncRun.objects.create(connected_registry=floor, trigger="manual", status="running",
                           queued_at=now - dt.timedelta(seconds=50), started_at=now - dt.timedelta(seconds=48),
                           tags_planned=14, tags_done=5, tags_copied=5, bytes_planned=420 * 2**20,
                           bytes_moved=151 * 2**20)


def serve():
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    server = LiveServerThread("127.0.0.1", StaticFilesHandler)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    return server, f"http://127.0.0.1:{server.port}"


def shoot(base: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def page_for(user, width, height, mobile=False):
            context = browser.new_context(base_url=base, viewport={"width": width, "height": height},
                                          device_scale_factor=1, is_mobile=mobile, timezone_id="Europe/Paris")
            page = context.new_page()
            page.goto("/login/")
            page.fill("#id_username", user)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            return page

        def save(page, name, full_page=True):
            path = OUT / f"{name}.png"
            page.screenshot(path=str(path), full_page=full_page)
            saved.append(path)

        cr = "/registries/myacrregistry/connected-registries/"
        page = page_for("alice", 1280, 800)
        page.goto(cr)
        save(page, "list")
        page.goto(cr + "floor0001/")
        page.locator("#cr-events dl").wait_for()  # loaded by the page (htmx)
        save(page, "detail")
        page.goto(cr + "new/")
        page.fill("#id_name", "depot0003")
        page.select_option("#id_parent", "store0042")
        page.fill("#id_repositories", "hello-world")
        page.check("input[name=sync_type][value=scheduled]")
        page.fill("#id_sync_schedule", "0 22 * * 1-5")
        page.fill("#id_sync_window", "PT6H")
        page.get_by_text("At 22:00, Monday through Friday (UTC)").wait_for()
        page.wait_for_function(LOCALIZED)
        page.locator("#feedback-placement .field-warning").wait_for()
        save(page, "create")
        page.goto(cr + "edgesite7/")
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Generate password 1").click()
        page.locator("#new-password").wait_for()
        page.locator("#cr-token").scroll_into_view_if_needed()
        page.locator("#cr-token").screenshot(path=str(OUT / "password-once.png"))
        saved.append(OUT / "password-once.png")
        page.goto("/")
        page.get_by_role("button", name="Generate events secret").click()
        page.locator(".card .one-time").wait_for()
        page.locator(".card:has(.one-time)").screenshot(path=str(OUT / "events-secret.png"))
        saved.append(OUT / "events-secret.png")

        viewer = page_for("teamviewer", 1280, 800)
        viewer.goto("/status/")
        save(viewer, "status")

        phone = page_for("teamviewer", 390, 844, mobile=True)
        phone.goto("/status/")
        save(phone, "status-phone", full_page=False)
        phone.goto(cr + "floor0001/")
        phone.locator("#cr-events dl").wait_for()
        save(phone, "detail-phone", full_page=False)
        browser.close()
    return saved


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-") as data_dir:
        setup(data_dir)
        make_data()
        server, base = serve()
        try:
            for path in shoot(base):
                print(path.relative_to(ROOT))
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
