"""The sync token of a connected registry: enable or disable it, and
generate password 1 or 2. A new password is answered once, in a partial with
its connection string (never stored in the session, never logged, never in a
later GET), with Cache-Control: no-store."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from connected import credentials
from connected.forms import GeneratePasswordForm

from .base import action, actor, connected_registry_or_404, no_store
from .connected_registries import flat


def _token_section(request, cr, errors=(), notices=(), status=200):
    if not request.htmx:
        for error in errors:
            messages.error(request, error)
        for notice in notices:
            messages.success(request, notice)
        return redirect("connected_registry_detail", registry_name=cr.registry.name, name=cr.name)
    cr.refresh_from_db()
    return render(request, "connected/_cr_token.html",
                  {"registry": cr.registry, "cr": cr, "token": cr.sync_token_or_none(),
                   "password_form": GeneratePasswordForm(initial={"parent_protocol": "https"}),
                   "token_errors": list(errors), "token_notices": list(notices)}, status=status)


@action
def token_status(request, registry_name, name):
    cr = connected_registry_or_404(registry_name, name)
    try:
        token = credentials.sync_token_of(cr)
        credentials.update_token_status(token, request.POST.get("status", ""), actor=actor(request))
    except ValidationError as e:
        return _token_section(request, cr, errors=flat(e), status=422)
    notice = f"Sync token {token.name} {token.status}."
    if token.status == token.Status.DISABLED:
        notice += " Sync is stopped until it is enabled again."
    return _token_section(request, cr, notices=[notice])


@action
def generate_password(request, registry_name, name):
    """Generate password 1 or 2 and answer it once, with its connection string."""
    cr = connected_registry_or_404(registry_name, name)
    form = GeneratePasswordForm(request.POST)
    form.is_valid()
    try:
        protocol, slot = credentials.check_settings_request(
            cr, form.cleaned_data.get("parent_protocol") or "https", form.cleaned_data.get("password", ""))
        token = credentials.sync_token_of(cr)
        password = credentials.generate_password(token, slot, actor=actor(request))
    except ValidationError as e:
        response = render(request, "connected/_password_error.html", {"errors": flat(e)}, status=422)
        return no_store(response)
    context = {
        "cr": cr, "token": token, "password": password,
        "connection_string": credentials.connection_string(cr, token, password["value"], protocol),
        "warnings": credentials.settings_warnings(cr),
    }
    return no_store(render(request, "connected/_password_once.html", context))
