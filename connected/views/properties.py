"""Editing a connected registry in place: its sync properties (schedule,
window, TTL, log level) and its repositories. Each answers with its own
section, re-rendered with the result or the operation's errors; a plain POST
(no JavaScript) gets the whole page, with the errors in that section."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from connected import operations
from connected.forms import RepositoriesForm, SyncPropertiesForm, split_repositories

from .base import action, actor, connected_registry_or_404, render_page
from .connected_registries import detail_context


def _section(request, template, context, notices=(), status=200):
    if request.htmx:
        return render(request, template, context, status=status)
    cr = context["cr"]
    if status != 200:
        # The page as it would load, with this section's form and its errors.
        return render_page(request, "connected/connected_registry_detail.html", "connected/_cr_live.html",
                           {**detail_context(cr), **context}, status=status)
    for notice in notices:
        messages.success(request, notice)
    return redirect("connected_registry_detail", registry_name=cr.registry.name, name=cr.name)


@action
def sync_properties_update(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    form = SyncPropertiesForm.for_connected_registry(cr, request.POST)
    form.is_valid()
    notices, status = [], 200
    try:
        operations.update_connected_registry(cr, **form.update_values(), actor=actor(request))
    except ValidationError as e:
        form.add_operation_errors(e)
        status = 422
    else:
        notices = (["Sync properties saved."] if cr.changes else ["Nothing changed: these are the stored values."]) \
            + cr.warnings
        form = SyncPropertiesForm.for_connected_registry(cr)
    return _section(request, "connected/_cr_properties.html",
                    {"registry": cr.registry, "cr": cr, "properties_form": form, "properties_notices": notices,
                     "editing": status != 200}, notices, status=status)


@action
def repositories_change(request, registry_name, name):
    """Add the repositories typed in `add`, or remove the one named by `remove`."""
    cr = connected_registry_or_404(registry_name, name)
    form = RepositoriesForm(request.POST)
    form.is_valid()
    add = split_repositories(form.cleaned_data.get("add", ""))
    remove = split_repositories(form.cleaned_data.get("remove", ""))
    notices, status = [], 200
    try:
        if not add and not remove:
            raise ValidationError({"add": ["type a repository to add."]})
        operations.change_repositories(cr, add=add, remove=remove, actor=actor(request))
    except ValidationError as e:
        form.add_operation_errors(e)
        status = 422
        cr.refresh_from_db()
    else:
        notices = [f"Added {', '.join(add)}." if add else f"Removed {', '.join(remove)}."]
        form = RepositoriesForm()
    return _section(request, "connected/_cr_repositories.html",
                    {"registry": cr.registry, "cr": cr, "repositories_form": form,
                     "repositories_notices": notices,
                     "nesting_warnings": operations.nesting_warnings(cr)}, notices, status=status)
