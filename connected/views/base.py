"""What every page shares: who may change things, login and action
decorators, full page or htmx partial, lookups that 404, errors by field.

Roles (see the README's Roles section): an administrator is an active
superuser or a member of the group "Administrators"; any other logged-in user
is a viewer. `is_administrator` is the one check; every changing view goes
through `@action`, which also makes it POST-only and CSRF-protected.
"""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from connected import operations
from connected.audit import Actor, Source
from connected.models import ConnectedRegistry, Registry

ADMINISTRATORS_GROUP = "Administrators"


def is_administrator(user) -> bool:
    """May this user change things through the pages? (One query, cached on the user.)"""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_portal_is_administrator", None)
    if cached is None:
        cached = user.groups.filter(name=ADMINISTRATORS_GROUP).exists()
        user._portal_is_administrator = cached
    return cached


def page(view):
    """Any logged-in user. An htmx request whose session has ended sends the
    whole browser to the login page (a plain redirect would be followed by
    htmx and the login form swapped into the middle of a table). Sets
    request.can_change for the templates."""
    protected = login_required(view)

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.htmx and not request.user.is_authenticated:
            return HttpResponseClientRedirect(redirect_to_login(request.get_full_path()).url)
        request.can_change = is_administrator(request.user)
        return protected(request, *args, **kwargs)

    return wrapper


def administrator_page(view):
    """A page only administrators may see (forms, as-you-type checks); viewers get 403."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.can_change:
            raise PermissionDenied("Only administrators may do this.")
        return view(request, *args, **kwargs)

    return page(wrapper)


def action(view):
    """A changing view: POST only, CSRF-checked, administrators only."""
    return administrator_page(require_POST(csrf_protect(view)))


def actor(request) -> Actor:
    return Actor(request.user.get_username(), Source.WEB)


def render_page(request, page_template: str, partial: str, context: dict, status: int = 200):
    """The full page, or only its partial for an htmx request (same template piece)."""
    response = render(request, partial if request.htmx else page_template, context, status=status)
    # Both answers share a URL: keep the browser cache (back button) from
    # showing a bare partial as a page.
    patch_vary_headers(response, ["HX-Request"])
    return response


def no_store(response):
    """For answers that carry a secret: never cached, never kept."""
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0, private"
    response["Pragma"] = "no-cache"
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


BLANK = "This field cannot be blank."


def errors_by_field(error: ValidationError) -> dict[str, list[str]]:
    """An operation's ValidationError as {field: [messages]} ("__all__" for
    the rest). Django's generic "cannot be blank" gives way to the product's
    own message for the same field when there is one."""
    errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
    return {field: [m for m in messages if m != BLANK or len(messages) == 1] for field, messages in errors.items()}
