"""What the CLI prints, as plain data and text: the public API's camelCase
dictionaries (reused by the pages and a future API), az-style tables, the
tree order of connected registries, --query lookups and sync-run outcomes.
Nothing here writes to the database."""
from __future__ import annotations

import datetime as dt
import json

from . import access
from .models import ConnectedRegistry, Registry, ScopeMap, SyncRun, Token

# The seed writes `--query lastSync`; the API property is nested.
QUERY_ALIASES = {"lastSync": "parent.syncProperties.lastSyncTime"}

SHOW_COLUMNS = ("NAME", "MODE", "CONNECTION STATE", "PARENT", "LOGIN SERVER", "LAST SYNC (UTC)",
                "SYNC SCHEDULE", "SYNC WINDOW", "SYNC STATE")
LIST_COLUMNS = ("NAME", "MODE", "CONNECTION STATE", "PARENT", "LOGIN SERVER", "LAST SYNC (UTC)", "SYNC STATE")
REGISTRY_COLUMNS = ("NAME", "LOGIN SERVER", "DATA ENDPOINT ENABLED", "CREATION DATE (UTC)")
TOKEN_COLUMNS = ("NAME", "SCOPE MAP", "STATUS", "CONNECTED REGISTRY", "PASSWORDS", "CREATION DATE (UTC)")


def iso_time(value: dt.datetime | None) -> str | None:
    """UTC, ISO 8601 with a Z, as the public API writes times."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def table_time(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def registry_id(registry: Registry) -> str:
    return f"/registries/{registry.name}"


def connected_registry_id(cr: ConnectedRegistry) -> str:
    return f"{registry_id(cr.registry)}/connectedRegistries/{cr.name}"


def token_id(registry: Registry, name: str) -> str:
    return f"{registry_id(registry)}/tokens/{name}"


def scope_map_id(registry: Registry, name: str) -> str:
    return f"{registry_id(registry)}/scopeMaps/{name}"


def gateway_endpoint(cr: ConnectedRegistry) -> str | None:
    return cr.gateway_endpoint()


def registry_to_dict(registry: Registry) -> dict:
    host = registry.data_endpoint_host()
    return {
        "id": registry_id(registry),
        "name": registry.name,
        "loginServer": registry.login_server,
        "dataEndpointEnabled": registry.data_endpoint_enabled,
        "dataEndpointHostNames": [host] if registry.data_endpoint_enabled else [],
        "creationDate": iso_time(registry.created_at),
        "provisioningState": "Succeeded",
    }


def connected_registry_to_dict(cr: ConnectedRegistry) -> dict:
    """A connected registry in the public API's shape (camelCase names)."""
    return {
        "id": connected_registry_id(cr),
        "name": cr.name,
        "mode": cr.mode,
        "connectionState": cr.connection_state,
        "activation": {"status": cr.activation_status},
        "parent": {
            "id": connected_registry_id(cr.parent) if cr.parent_id else None,
            "syncProperties": {
                "tokenId": token_id(cr.registry, sync_token_name(cr)),
                "schedule": cr.sync_schedule,
                "syncWindow": None if cr.is_continuous() else cr.sync_window,
                "messageTtl": cr.message_ttl,
                "lastSyncTime": iso_time(cr.last_sync_at),
                "gatewayEndpoint": gateway_endpoint(cr),
            },
        },
        "lastActivityTime": iso_time(cr.last_activity_at),
        "loginServer": cr.login_server or None,
        "logging": {"logLevel": cr.log_level},
        "statusDetails": cr.current_status_details(),
        "clientTokenIds": [token_id(cr.registry, t.name) for t in cr.client_tokens.order_by("name")],
        "repositories": list(cr.repositories or []),
        "provisioningState": "Succeeded",
    }


def gateway_config_to_dict(cr: ConnectedRegistry) -> dict:
    """What the edge agent reads from the gateway API (GET .../config): the
    properties it acts on, in the public API's camelCase names."""
    data = connected_registry_to_dict(cr)
    sync = data["parent"]["syncProperties"]
    return {
        "id": data["id"],
        "name": data["name"],
        "mode": data["mode"],
        "parent": {"name": cr.parent_name(),
                   "id": connected_registry_id(cr.parent) if cr.parent_id else registry_id(cr.registry)},
        "loginServer": data["loginServer"],
        "gatewayEndpoint": sync["gatewayEndpoint"],
        "dataEndpointEnabled": cr.registry.data_endpoint_enabled,
        "syncProperties": {"schedule": sync["schedule"], "syncWindow": sync["syncWindow"],
                           "messageTtl": sync["messageTtl"], "lastSyncTime": sync["lastSyncTime"]},
        "repositories": data["repositories"],
        "logging": data["logging"],
        "activation": data["activation"],
        "connectionState": data["connectionState"],
    }


def sync_token_name(cr: ConnectedRegistry) -> str:
    token = cr.sync_token_or_none()
    return token.name if token is not None else access.sync_token_name(cr.name)


def token_to_dict(token: Token) -> dict:
    """A token as `az acr token show` prints it: never a password value."""
    cr = token.connected_registry
    return {
        "id": token_id(token.registry, token.name),
        "name": token.name,
        "scopeMapId": scope_map_id(token.registry, token.scope_map.name),
        "status": token.status,
        "credentials": {
            "username": token.name,
            "passwords": [{"name": p["name"], "creationTime": iso_time(p["created_at"]),
                           "expiry": iso_time(p["expires_at"])} for p in token.passwords()],
        },
        "connectedRegistryId": connected_registry_id(cr) if cr is not None else None,
        "creationDate": iso_time(token.created_at),
        "provisioningState": "Succeeded",
    }


def token_row(token: Token) -> list[str]:
    cr = token.connected_registry
    return [token.name, token.scope_map.name, token.status, cr.name if cr is not None else "-",
            ", ".join(p["name"] for p in token.passwords()) or "-", table_time(token.created_at)]


def generated_password_to_dict(token: Token, password: dict) -> dict:
    """The one display of a new password, as `az acr token credential generate` prints it."""
    return {"username": token.name,
            "passwords": [{"name": password["name"], "value": password["value"],
                           "creationTime": iso_time(password["created_at"]),
                           "expiry": iso_time(password["expires_at"])}]}


def scope_map_to_dict(scope_map: ScopeMap) -> dict:
    return {
        "id": scope_map_id(scope_map.registry, scope_map.name),
        "name": scope_map.name,
        "description": scope_map.description,
        "actions": list(scope_map.actions),
        "creationDate": iso_time(scope_map.created_at),
        "type": "UserDefined",
        "provisioningState": "Succeeded",
    }


def to_json(data) -> str:
    return json.dumps(data, indent=2)


def query(data: dict, path: str):
    """The value at a dotted camelCase path (keys matched exactly, else
    case-insensitively). Raises KeyError naming the part that does not exist."""
    value = data
    for part in QUERY_ALIASES.get(path, path).split("."):
        if not isinstance(value, dict):
            raise KeyError(part)
        key = part if part in value else next((k for k in value if k.lower() == part.lower()), None)
        if key is None:
            raise KeyError(part)
        value = value[key]
    return value


def latest_run(cr: ConnectedRegistry) -> SyncRun | None:
    return cr.runs.order_by("-queued_at", "-pk").first()


def tree_order(crs, root: ConnectedRegistry | None = None,
               children: bool = True) -> list[tuple[ConnectedRegistry, int]]:
    """(connected registry, depth) pairs, each parent followed by its children,
    siblings by name. root None starts at the top-level registry; children
    False keeps only the direct children of the start."""
    by_parent: dict[int | None, list[ConnectedRegistry]] = {}
    for cr in crs:
        by_parent.setdefault(cr.parent_id, []).append(cr)
    for siblings in by_parent.values():
        siblings.sort(key=lambda c: c.name.lower())
    rows: list[tuple[ConnectedRegistry, int]] = []

    def walk(parent_id, depth):
        for cr in by_parent.get(parent_id, []):
            rows.append((cr, depth))
            if children:
                walk(cr.pk, depth + 1)

    walk(root.pk if root else None, 0)
    return rows


def connected_registry_row(cr: ConnectedRegistry, depth: int = 0, with_schedule: bool = True) -> list[str]:
    run = latest_run(cr)
    row = ["  " * depth + cr.name, cr.mode, cr.connection_state, cr.parent_name(),
           cr.login_server or "-", table_time(cr.last_sync_at)]
    if with_schedule:
        row += [cr.sync_schedule, cr.sync_window_display()]
    row.append(run.status if run else "-")
    return row


def registry_row(registry: Registry) -> list[str]:
    return [registry.name, registry.login_server, str(registry.data_endpoint_enabled).lower(),
            table_time(registry.created_at)]


def table(columns, rows) -> str:
    """az's table output: a header, a row of dashes, then the rows, columns
    separated by two spaces and as wide as their widest cell."""
    widths = [max([len(c)] + [len(str(r[i])) for r in rows]) for i, c in enumerate(columns)]

    def line(cells):
        return "  ".join(str(cell).ljust(w) for cell, w in zip(cells, widths)).rstrip()

    return "\n".join([line(columns), line("-" * w for w in widths)] + [line(r) for r in rows])


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


RUN_COLUMNS = ["RUN", "TRIGGER", "STATUS", "SCOPE", "QUEUED (UTC)", "DURATION", "TAGS", "COPIED", "IN SYNC",
               "DELETED", "FAILED", "BYTES", "PROGRESS"]


def run_to_dict(run: SyncRun, with_ledger: bool = False) -> dict:
    """A run as JSON: counters, progress (readable while it runs) and, on request, its ledger."""
    fraction = run.progress_fraction()
    eta = run.eta()
    data = {
        "id": run.pk, "trigger": run.trigger, "scope": run.scope, "status": run.status,
        "queuedAt": iso_time(run.queued_at),
        "startedAt": iso_time(run.started_at), "finishedAt": iso_time(run.finished_at),
        "tags": {"planned": run.tags_planned, "done": run.tags_done, "copied": run.tags_copied,
                 "inSync": run.tags_skipped, "deleted": run.tags_deleted, "failed": run.tags_failed},
        "bytes": {"planned": run.bytes_planned, "moved": run.bytes_moved},
        "progress": None if fraction is None else round(fraction, 4),
        "etaSeconds": None if eta is None else int(eta.total_seconds()),
        "error": run.error or None,
    }
    if with_ledger:
        data["ledger"] = [{"repository": t.repository, "tag": t.tag, "outcome": t.outcome, "digest": t.digest or None,
                           "bytes": t.bytes_moved, "reason": t.reason or None} for t in run.tags.all()]
    return data


def run_row(run: SyncRun) -> list:
    duration = run.duration()
    fraction = run.progress_fraction()
    return [run.pk, run.trigger, run.status, run.get_scope_display(), table_time(run.queued_at),
            "-" if duration is None else f"{duration.total_seconds():.1f} s",
            f"{run.tags_done}/{run.tags_planned}", run.tags_copied, run.tags_skipped, run.tags_deleted,
            run.tags_failed, f"{human_bytes(run.bytes_moved)}/{human_bytes(run.bytes_planned)}",
            "-" if fraction is None else f"{fraction:.0%}"]


def run_outcome(run: SyncRun) -> str:
    """What a finished (or still unfinished) run did, a few lines for people."""
    duration = run.duration()
    lines = [
        f"run {run.pk}: {run.status}",
        f"  tags: {run.tags_copied} copied, {run.tags_skipped} already in sync, {run.tags_failed} failed",
        f"  bytes: {human_bytes(run.bytes_moved)} ({run.bytes_moved})",
        f"  duration: {duration.total_seconds():.1f} s" if duration is not None else "  duration: -",
    ]
    if run.error:
        lines.append(f"  error: {run.error}")
    return "\n".join(lines)


MESSAGE_COLUMNS = ("ID", "ACTION", "SUBJECT", "DIRECTION", "ORIGIN", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS")


def message_row(message, now: dt.datetime | None = None) -> list:
    """A sync message as `acr connected-registry messages --output table` shows it."""
    return [message.pk, message.action, message.subject(), message.direction, message.origin,
            table_time(message.created_at), table_time(message.expires_at), message.status(now)]
