"""Median render time of the connected registries list and the status page
with 500 connected registries (Django test client, in-process, against a
temporary SQLite database; 50 requests per page after 3 warm-up ones).

    .venv/bin/python benchmarks/pages.py [--rows 500] [--requests 50]

Prints one markdown table row per page, for the README's Benchmarks section.
"""
from __future__ import annotations

import argparse
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
    from devtools.fleet import populate_fleet

    return populate_fleet(rows)


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
        print("| page | rows | median (ms) | SQL queries |")
        print("|---|---|---|---|")
        for name, url in (("connected registries list", reverse("connected_registry_list", args=[registry.name])),
                          ("status", reverse("status"))):
            median, queries = measure(client, url, args.requests, args.rows)
            print(f"| {name} (`{url}`) | {args.rows} | {median:.0f} | {queries} |")


if __name__ == "__main__":
    main()
