"""A registry's connected registries: the list (filters, search, live rows),
the create form, the detail page and the lifecycle actions (activate,
deactivate, delete)."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Case, Count, IntegerField, Min, Q, Value, When
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect

from connected import operations
from connected.forms import ActivateForm, ConnectedRegistryCreateForm, DeleteForm, GeneratePasswordForm, \
    RepositoriesForm, SyncPropertiesForm
from connected.models import ConnectedRegistry, SyncRun, SyncRunTag

from . import events as events_views, rows
from .base import action, actor, administrator_page, connected_registry_or_404, errors_by_field, page, \
    registry_or_404, render_page

RECENT_RUNS = 20
RECENT_MESSAGES = 50
RECENT_CONFLICTS = 20
FILTERS = ("mode", "state", "parent", "q")


def filter_values(request) -> dict:
    return {key: request.GET.get(key, "").strip() for key in FILTERS}


@page
def connected_registry_list(request, registry_name):
    registry = registry_or_404(registry_name)
    filters = filter_values(request)
    queryset = rows.filtered(registry.connected_registries.all(), **filters)
    crs = rows.in_tree_order(list(rows.annotated(queryset)))
    rows.decorate(crs)
    context = {
        "registry": registry, "connected_registries": crs, "filters": filters,
        "filtering": any(filters.values()), "query_string": request.GET.urlencode(),
        "modes": ConnectedRegistry.Mode.values, "states": ConnectedRegistry.ConnectionState.values,
        # Parents to filter by: the connected registries that have children.
        "parents": sorted(registry.connected_registries.filter(children__isnull=False)
                          .values_list("name", flat=True).distinct(), key=str.lower),
    }
    return render_page(request, "connected/connected_registry_list.html", "connected/_connected_registry_rows.html",
                       context)


@administrator_page
def connected_registry_create(request, registry_name):
    registry = registry_or_404(registry_name)
    form = ConnectedRegistryCreateForm(request.POST or None, registry=registry,
                                       initial={"parent": request.GET.get("parent", "")})
    if request.method == "POST" and form.is_valid():
        values = form.sync_values()
        parent = None
        try:
            if form.cleaned_data["parent"]:
                try:
                    parent = operations.get_connected_registry(registry, form.cleaned_data["parent"])
                except operations.NotFound as e:
                    raise ValidationError({"parent": [str(e)]}) from None
            cr = operations.create_connected_registry(
                registry, form.cleaned_data["name"], form.repository_list(), mode=form.cleaned_data["mode"] or
                ConnectedRegistry.Mode.READ_ONLY, parent=parent, sync_schedule=values["sync_schedule"],
                sync_window=values["sync_window"], message_ttl=values["message_ttl"], actor=actor(request))
        except ValidationError as e:
            form.add_operation_errors(e)
        else:
            messages.success(request, f"Connected registry {cr.name} created, with its sync token "
                                      f"{cr.sync_token.name}.")
            for warning in cr.warnings:
                messages.warning(request, warning)
            url = reverse("connected_registry_detail", args=[registry.name, cr.name])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return render(request, "connected/connected_registry_form.html",
                  {"registry": registry, "form": form, "creating": True},
                  status=422 if form.errors else 200)


# --- detail -----------------------------------------------------------------

def message_counts(cr: ConnectedRegistry, now) -> dict:
    """{"pending", "expired", "oldest_pending_at"} of cr's sync messages, in one query."""
    pending = Q(acknowledged_at__isnull=True, expires_at__gt=now)
    return cr.messages.aggregate(
        pending=Count("pk", filter=pending),
        expired=Count("pk", filter=Q(acknowledged_at__isnull=True, expires_at__lte=now)),
        oldest_pending_at=Min("created_at", filter=pending))


def recent_messages(cr: ConnectedRegistry, now) -> list:
    """The RECENT_MESSAGES most recent sync messages of cr, pending first,
    each with .status_now (pending, applied, expired); one query."""
    waiting = Case(When(acknowledged_at__isnull=True, expires_at__gt=now, then=Value(0)), default=Value(1),
                   output_field=IntegerField())
    rows = list(cr.messages.annotate(settled=waiting).order_by("settled", "-created_at", "-pk")
                [:RECENT_MESSAGES])
    for message in rows:
        message.status_now = message.status(now)
    return rows


def live_context(cr: ConnectedRegistry) -> dict:
    """The self-refreshing part of the detail page: state, actions, runs,
    sync messages."""
    now = timezone.now()
    runs = list(cr.runs.all()[:RECENT_RUNS])
    for run in runs:
        describe_progress(run)
    active = next((run for run in runs if not run.is_finished()), None)
    return {
        "registry": cr.registry, "cr": cr, "runs": runs, "active_run": active,
        "status_details": cr.current_status_details(), "blockers": cr.sync_blockers(),
        "message_counts": message_counts(cr, now), "sync_messages": recent_messages(cr, now),
        "recent_messages_limit": RECENT_MESSAGES,
        "conflicts": recent_conflicts(cr), "recent_conflicts_limit": RECENT_CONFLICTS,
        # Poll while something is moving; the last poll's answer has no
        # trigger, which stops the polling.
        "live": cr.connection_state == ConnectedRegistry.ConnectionState.SYNCING or active is not None,
    }


def recent_conflicts(cr: ConnectedRegistry) -> list[SyncRunTag]:
    """The newest RECENT_CONFLICTS tags that changed on both sides (ledger
    rows of outcome conflict, with their run), newest first."""
    return list(SyncRunTag.objects.filter(run__connected_registry=cr, outcome=SyncRunTag.Outcome.CONFLICT)
                .select_related("run").order_by("-run__queued_at", "-pk")[:RECENT_CONFLICTS])


def seconds_text(seconds: float) -> str:
    """'1h 02m 03s' / '2m 03s' / '3s'."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def describe_progress(run: SyncRun) -> SyncRun:
    """run.progress (0-1 or None), run.percent and run.eta_text, for the progress bar."""
    run.progress = run.progress_fraction()
    run.percent = None if run.progress is None else round(run.progress * 100)
    eta = run.eta()
    run.eta_text = seconds_text(eta.total_seconds()) if eta is not None else ""
    return run


def detail_context(cr: ConnectedRegistry) -> dict:
    token = cr.sync_token_or_none()
    return {
        **live_context(cr),
        "properties_form": SyncPropertiesForm.for_connected_registry(cr),
        "events_panel": events_views.cr_context(cr),
        "repositories_form": RepositoriesForm(),
        "activate_form": ActivateForm(),
        "delete_form": DeleteForm(),
        "password_form": GeneratePasswordForm(initial={"parent_protocol": "https"}),
        "token": token,
        "deletion_blocker": operations.deletion_blocker(cr),
        "nesting_warnings": operations.nesting_warnings(cr),
        "state_changes": cr.state_changes.all()[:20],
    }


@page
def connected_registry_detail(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    if request.htmx:
        return render_page(request, "connected/connected_registry_detail.html", "connected/_cr_live.html",
                           live_context(cr))
    return render_page(request, "connected/connected_registry_detail.html", "connected/_cr_live.html",
                       detail_context(cr))


def live_response(request, cr: ConnectedRegistry, errors: list[str] = (), notices: list[str] = ()):
    """After an action: the live part again (htmx) or the page (plain POST)."""
    if request.htmx:
        cr.refresh_from_db()
        return render(request, "connected/_cr_live.html",
                      {**live_context(cr), "action_errors": list(errors), "action_notices": list(notices)})
    for error in errors:
        messages.error(request, error)
    for notice in notices:
        messages.success(request, notice)
    return redirect("connected_registry_detail", registry_name=cr.registry.name, name=cr.name)


def flat(error: ValidationError) -> list[str]:
    return [m for messages_ in errors_by_field(error).values() for m in messages_]


@action
def connected_registry_activate(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    form = ActivateForm(request.POST)
    form.is_valid()
    try:
        operations.activate_connected_registry(cr, form.cleaned_data["login_server"], actor=actor(request))
    except ValidationError as e:
        return live_response(request, cr, errors=flat(e))
    return live_response(request, cr, notices=[f"{cr.name} is active at {cr.login_server}."] + cr.warnings)


@action
def connected_registry_deactivate(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    operations.deactivate_connected_registry(cr, actor=actor(request))
    return live_response(request, cr, notices=[f"{cr.name} is deactivated: another instance may now be activated."])


@action
def connected_registry_delete(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    form = DeleteForm(request.POST)
    form.is_valid()
    error = None
    if form.cleaned_data["confirm_name"] != cr.name:
        error = f"Type the name '{cr.name}' exactly to delete it."
    else:
        try:
            operations.delete_connected_registry(cr, actor=actor(request))
        except ValidationError as e:
            error = " ".join(flat(e))
    if error:
        if request.htmx:
            return render(request, "connected/_cr_delete.html",
                          {"registry": cr.registry, "cr": cr, "delete_form": form, "delete_error": error,
                           "deletion_blocker": operations.deletion_blocker(cr)}, status=422)
        messages.error(request, error)
        return redirect("connected_registry_detail", registry_name=cr.registry.name, name=cr.name)
    messages.success(request, f"Connected registry {name} deleted, with its sync token and scope map.")
    url = reverse("connected_registry_list", args=[cr.registry.name])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
