"""A fleet of connected registries in the database, for the page tests and
the page benchmark (one builder, so the benchmark measures what the tests
assert): a third nested, half scheduled with varied crons, all four states,
two runs each. Rows only; no registry is contacted."""
from __future__ import annotations

import datetime as dt

LAST_SYNC = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


def populate_fleet(count: int, registry_name: str = "myacrregistry"):
    from connected.models import ConnectedRegistry, Registry, SyncRun

    registry = Registry.objects.create(name=registry_name, login_server="http://127.0.0.1:5001",
                                       data_endpoint_enabled=True)
    crs = ConnectedRegistry.objects.bulk_create([
        ConnectedRegistry(registry=registry, name=f"conn{i:04d}", repositories=["hello-world", "app/frontend"],
                          sync_schedule="* * * * *" if i % 2 else f"{i % 60} {i % 24} * * *",
                          sync_window=None if i % 2 else "PT2H",
                          login_server=f"http://10.0.{i // 250}.{i % 250}:5000",
                          connection_state=ConnectedRegistry.ConnectionState.values[i % 4],
                          last_sync_at=LAST_SYNC if i % 3 else None)
        for i in range(count)])
    for i, cr in enumerate(crs):
        if i % 3 == 2:
            cr.parent = crs[i - 1]
    ConnectedRegistry.objects.bulk_update(crs, ["parent"])
    SyncRun.objects.bulk_create([SyncRun(connected_registry=cr, status=status, tags_failed=i % 2)
                                 for i, cr in enumerate(crs) for status in ("succeeded", "partial")])
    return registry
