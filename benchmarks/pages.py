"""Median render time of the connected registries list and the status page
with 500 connected registries (Django test client, in-process, against a
temporary SQLite database; 50 requests per page after 3 warm-up ones).

    .venv/bin/python benchmarks/pages.py [--rows 500] [--requests 50]

Prints one markdown table row per page, for the README's Benchmarks section.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(data_dir: str) -> None:
    os.environ["PORTAL_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_portal.settings")
    os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def populate(rows: int):
    """rows connected registries in one registry: a third nested, half
    scheduled (varied crons), all four states, two runs each."""
    from connected.models import ConnectedRegistry, Registry, SyncRun

    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    registry = Registry.objects.create(name="myacrregistry", login_server="http://127.0.0.1:5001",
                                       data_endpoint_enabled=True)
    crs = ConnectedRegistry.objects.bulk_create([
        ConnectedRegistry(registry=registry, name=f"conn{i:04d}", repositories=["hello-world", "app/frontend"],
                          sync_schedule="* * * * *" if i % 2 else f"{i % 60} {i % 24} * * *",
                          sync_window=None if i % 2 else "PT2H", login_server=f"http://10.0.{i // 250}.{i % 250}:5000",
                          connection_state=ConnectedRegistry.ConnectionState.values[i % 4],
                          last_sync_at=t0 if i % 3 else None)
        for i in range(rows)])
    for i, cr in enumerate(crs):
        if i % 3 == 2:
            cr.parent = crs[i - 1]
    ConnectedRegistry.objects.bulk_update(crs, ["parent"])
    SyncRun.objects.bulk_create([SyncRun(connected_registry=cr, status=status, tags_failed=i % 2)
                                 for i, cr in enumerate(crs) for status in ("succeeded", "partial")])
    return registry


def measure(client, url: str, requests: int, expected_rows: int) -> tuple[float, int]:
    from django.db import connection

    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200, response.status_code
    assert response.content.decode().count('<th scope="row"') == expected_rows
    queries = []
    with connection.execute_wrapper(lambda execute, sql, *a: queries.append(sql) or execute(sql, *a)):
        client.get(url)
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pages-bench-") as data_dir:
        setup_django(data_dir)
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.urls import reverse

        registry = populate(args.rows)
        client = Client()
        client.force_login(get_user_model().objects.create_user("bench", is_superuser=True))
        print(f"| page | rows | median (ms) | SQL queries |")
        print("|---|---|---|---|")
        for name, url in (("connected registries list", reverse("connected_registry_list", args=[registry.name])),
                          ("status", reverse("status"))):
            median, queries = measure(client, url, args.requests, args.rows)
            print(f"| {name} (`{url}`) | {args.rows} | {median:.0f} | {queries} |")


if __name__ == "__main__":
    main()
