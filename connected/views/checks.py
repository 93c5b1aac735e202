"""As-you-type validation (htmx): each endpoint builds the connected registry
the form describes, unsaved, and asks the same validation as the operations
(model.full_clean, connected.validation), then renders the feedback of one
group of fields: errors, the cron in plain words with its next window
openings, the nesting warning."""
from __future__ import annotations

import copy

from cron_descriptor import ExpressionDescriptor, Options
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.utils import timezone

from connected import operations, schedule, validation
from connected.cli_output import iso_time
from connected.forms import ConnectedRegistryCreateForm, SyncPropertiesForm
from connected.models import ConnectedRegistry

from .base import administrator_page, connected_registry_or_404, errors_by_field, registry_or_404

GROUPS = {
    "name": ("name",),
    "placement": ("mode", "parent"),
    "repositories": ("repositories",),
    "schedule": ("sync_schedule", "sync_window"),
    "message_ttl": ("message_ttl",),
}
OPENINGS = 5


def describe_cron(cron: str) -> str:
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(cron, options).get_description() + " (UTC)"
    except Exception:
        return ""


def schedule_preview(cron: str, window: str | None, now=None) -> dict | None:
    """The plain-words cron and its next window openings, for a valid schedule."""
    if validation.is_continuous(cron):
        return {"continuous": True, "description": "Continuous sync: changes flow as soon as they are known."}
    delta = validation.parse_duration(window or validation.DEFAULT_SYNC_WINDOW, "sync_window")
    now = now or timezone.now()
    openings = schedule.next_window_openings(cron, delta, now, count=OPENINGS)
    current = schedule.window_containing(cron, delta, now)
    return {"continuous": False, "description": describe_cron(cron), "window": window or validation.DEFAULT_SYNC_WINDOW,
            "openings": [{"at": at, "iso": iso_time(at)} for at in openings],
            "open_until": iso_time(current[1]) if current else None}


def check(candidate: ConnectedRegistry, fields, window_typed: str | None) -> dict:
    """Errors for `fields` of the candidate, plus what the user should know."""
    try:
        candidate.full_clean()
        errors = {}
    except ValidationError as e:
        errors = errors_by_field(e)
    result = {"errors": [m for f in fields for m in errors.get(f, [])]}
    if "sync_schedule" in fields:
        if window_typed and "sync_window" not in errors:
            try:  # the window is checked only once the cron is valid: say now if it is not
                validation.validate_sync_window(window_typed)
            except ValidationError as e:
                result["errors"] += errors_by_field(e).get("sync_window", [])
        if not result["errors"]:
            result["preview"] = schedule_preview(candidate.sync_schedule, candidate.sync_window)
    if "parent" in fields and candidate.parent_id and not errors.get("parent"):
        result["warnings"] = operations.nesting_warnings(candidate)
    return result


def _render(request, group, result):
    return render(request, "connected/_check.html", {"group": group, **result})


@administrator_page
def create_check(request, registry_name, group):
    """Feedback for one group of the create form."""
    registry = registry_or_404(registry_name)
    fields = GROUPS.get(group) or GROUPS["name"]
    form = ConnectedRegistryCreateForm(request.GET, registry=registry)
    form.is_valid()
    values = form.sync_values()
    candidate = ConnectedRegistry(registry=registry, name=form.cleaned_data.get("name", ""),
                                  mode=form.cleaned_data.get("mode") or validation.MODES[0],
                                  repositories=form.repository_list(), sync_schedule=values["sync_schedule"],
                                  sync_window=values["sync_window"],
                                  message_ttl=values["message_ttl"] or validation.DEFAULT_MESSAGE_TTL)
    parent_name = form.cleaned_data.get("parent")
    if parent_name:
        try:
            candidate.parent = operations.get_connected_registry(registry, parent_name)
        except operations.NotFound as e:
            return _render(request, group, {"errors": [str(e)]} if "parent" in fields else {"errors": []})
    return _render(request, group, check(candidate, fields, values["sync_window"]))


@administrator_page
def update_check(request, registry_name, name, group):
    """Feedback for one group of a connected registry's sync properties form."""
    cr = connected_registry_or_404(registry_name, name)
    fields = GROUPS.get(group) or GROUPS["schedule"]
    form = SyncPropertiesForm.for_connected_registry(cr, request.GET)
    form.is_valid()
    values = form.sync_values()
    candidate = copy.copy(cr)
    candidate.sync_schedule = values["sync_schedule"]
    if values["sync_window"] is not None:
        candidate.sync_window = values["sync_window"]
    if values["message_ttl"] is not None:
        candidate.message_ttl = values["message_ttl"]
    return _render(request, group, check(candidate, fields, values["sync_window"]))
