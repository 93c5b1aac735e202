"""The portal's pages. Each view renders a full page, or, for an htmx poll,
only the piece of that page that refreshes itself (same template piece)."""
from __future__ import annotations

from collections import defaultdict
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import operations
from .audit import Actor
from .models import ConnectedRegistry, Registry, SyncRun

RECENT_RUNS = 20
RUN_STATUS_LABELS = {status.value: status.label.lower() for status in SyncRun.Status}


def portal_login_required(view):
    """login_required, except that an htmx poll whose session has ended sends
    the whole browser to the login page (a plain redirect would be followed by
    htmx and the login form swapped into the middle of a table)."""
    protected = login_required(view)

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.htmx and not request.user.is_authenticated:
            return HttpResponseClientRedirect(redirect_to_login(request.get_full_path()).url)
        return protected(request, *args, **kwargs)

    return wrapper


def render_page(request, page: str, partial: str, context: dict):
    """The full page, or only its self-refreshing partial for an htmx request."""
    response = render(request, partial if request.htmx else page, context)
    # Both answers share a URL: keep the browser cache (back button) from
    # showing a bare partial as a page.
    patch_vary_headers(response, ["HX-Request"])
    return response


def registry_or_404(registry_name: str) -> Registry:
    try:
        return operations.get_registry(registry_name)
    except operations.NotFound as e:
        raise Http404(str(e)) from None


def connected_registry_or_404(registry_name: str, name: str) -> ConnectedRegistry:
    try:
        return operations.get_connected_registry(registry_or_404(registry_name), name)
    except operations.NotFound as e:
        raise Http404(str(e)) from None


def in_tree_order(connected_registries) -> list[ConnectedRegistry]:
    """Each parent followed by its children (siblings by name), each given a
    .depth (0 for children of the registry itself)."""
    present = {cr.pk for cr in connected_registries}
    children = defaultdict(list)
    for cr in connected_registries:
        children[cr.parent_id if cr.parent_id in present else None].append(cr)
    for siblings in children.values():
        siblings.sort(key=lambda cr: cr.name.lower())
    ordered, stack = [], [(cr, 0) for cr in reversed(children[None])]
    while stack:
        cr, depth = stack.pop()
        cr.depth = depth
        ordered.append(cr)
        stack.extend((child, depth + 1) for child in reversed(children[cr.pk]))
    return ordered


@portal_login_required
def home(request):
    registries = Registry.objects.annotate(connected_count=Count("connected_registries")).order_by("name")
    return render(request, "connected/home.html", {"registries": registries})


@portal_login_required
def connected_registry_list(request, registry_name):
    registry = registry_or_404(registry_name)
    latest_run = SyncRun.objects.filter(connected_registry=OuterRef("pk")).order_by("-queued_at", "-pk")
    rows = in_tree_order(list(
        registry.connected_registries.select_related("registry", "parent").annotate(
            latest_run_id=Subquery(latest_run.values("pk")[:1]),
            latest_run_status=Subquery(latest_run.values("status")[:1]),
        )
    ))
    for cr in rows:
        cr.latest_run_label = RUN_STATUS_LABELS.get(cr.latest_run_status, "")
    return render_page(request, "connected/connected_registry_list.html", "connected/_connected_registry_rows.html",
                       {"registry": registry, "connected_registries": rows})


@portal_login_required
def connected_registry_detail(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    runs = list(cr.runs.all()[:RECENT_RUNS])
    context = {
        "registry": cr.registry,
        "cr": cr,
        "runs": runs,
        # Poll only while something is moving; the last poll's answer has no
        # trigger, which stops the polling.
        "live": cr.connection_state == ConnectedRegistry.ConnectionState.SYNCING
        or any(not run.is_finished() for run in runs),
        "can_sync": request.user.is_staff or request.user.is_superuser,
    }
    return render_page(request, "connected/connected_registry_detail.html",
                       "connected/_connected_registry_live.html", context)


@portal_login_required
@require_POST
def sync_now(request, registry_name, name):
    if not (request.user.is_staff or request.user.is_superuser):
        raise PermissionDenied("Only staff may start a sync.")
    cr = connected_registry_or_404(registry_name, name)
    try:
        run = operations.queue_sync(cr, SyncRun.Trigger.MANUAL, actor=Actor(request.user.username, "web"))
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, f"Sync of {cr.name} queued (run {run.pk}).")
    return redirect("connected_registry_detail", registry_name=cr.registry.name, name=cr.name)


def duration_text(run: SyncRun) -> str:
    """Wall time as '1h 02m 03s' / '2m 03s' / '3s'; empty before the run starts."""
    elapsed = run.duration()
    if elapsed is None:
        return ""
    minutes, seconds = divmod(int(elapsed.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


@portal_login_required
def run_detail(request, registry_name, name, run_id):
    cr = connected_registry_or_404(registry_name, name)
    run = get_object_or_404(cr.runs, pk=run_id)
    context = {
        "registry": cr.registry,
        "cr": cr,
        "run": run,
        "duration": duration_text(run),
        "ledger": run.tags.all(),
        "live": not run.is_finished(),
    }
    return render_page(request, "connected/run_detail.html", "connected/_run_live.html", context)
