"""What every model admin of the portal shares: changes go through the
operations (connected.operations, connected.credentials) with the admin user
as the Actor, and a refusal by an operation comes back as an error on the
form, with nothing stored.

How a refusal reaches the form: the form first validates as any ModelForm
(the model's clean(), i.e. connected.validation); save_model() then calls the
operation, which may still refuse (a login server that does not answer, an
ancestor that cannot take a repository...). save_model() raises Refused; the
admin's transaction is rolled back (a change and its audit event go
together); changeform_view() renders the same POST again with the refusal
put on the form, so the user sees the field's error and nothing is stored.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from ..audit import Actor, Source


def admin_actor(request) -> Actor:
    return Actor(request.user.get_username(), Source.ADMIN)


def refusal_text(error: ValidationError) -> str:
    return " ".join(error.messages)


class Refused(Exception):
    """An operation refused a change made in a form (carries its ValidationError)."""

    def __init__(self, error: ValidationError):
        super().__init__(refusal_text(error))
        self.error = error


class OperationForm(forms.ModelForm):
    """A ModelForm on which every error of the rules lands somewhere visible:
    an error keyed by a field the form does not show (a read-only field, an
    operation's own key such as "add" or "sync") becomes a form-wide error
    instead of Django's ValueError."""

    # The operation's refusal on the previous attempt (set by OperationAdmin.get_form).
    refusal: ValidationError | None = None
    # Operation error keys that mean a field of the form.
    field_aliases: dict[str, str] = {}

    def _onto_form(self, error: ValidationError) -> ValidationError:
        if not hasattr(error, "error_dict"):
            return error
        mapped: dict[str, list] = {}
        for key, errors in error.error_dict.items():
            target = self.field_aliases.get(key, key)
            if target not in self.fields:
                target = NON_FIELD_ERRORS
            mapped.setdefault(target, []).extend(errors)
        return ValidationError(mapped)

    def _update_errors(self, errors):
        super()._update_errors(self._onto_form(errors))

    def _post_clean(self):
        super()._post_clean()
        if self.refusal is not None:
            self._update_errors(self.refusal)


class OperationAdmin(admin.ModelAdmin):
    """Base of the portal's model admins (see the module docstring)."""

    form = OperationForm

    # --- forms: a refusal is shown on the form --------------------------------
    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)  # a new class per call
        form.refusal = getattr(request, "_operation_refusal", None)
        return form

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except Refused as refused:  # the transaction is rolled back: nothing is stored
            request._operation_refusal = refused.error
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_related(self, request, form, formsets, change):
        """Nothing to save: the operation stored everything (no many-to-many fields here)."""

    # --- deletion: through the operation, refused with the reason -------------
    def deletion_blocker(self, obj) -> str | None:
        """Why obj cannot be deleted now, or None."""
        return None

    def delete_with_operation(self, request, obj) -> None:
        raise NotImplementedError

    def delete_model(self, request, obj):
        try:
            self.delete_with_operation(request, obj)
        except ValidationError as e:
            raise Refused(e) from None

    def delete_queryset(self, request, queryset):
        """All or nothing: each through the operation, in one transaction."""
        with transaction.atomic():
            for obj in list(queryset):
                self.delete_model(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_delete_permission(request, obj):
            return super().delete_view(request, object_id, extra_context)  # Django's answer (404/403)
        blocker = self.deletion_blocker(obj)
        if blocker is None:
            try:
                return super().delete_view(request, object_id, extra_context)
            except Refused as refused:  # refused at the last moment: rolled back
                blocker = str(refused)
        self.message_user(request, f"Cannot delete {obj}: {blocker}", messages.ERROR)
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                                            args=[obj.pk], current_app=self.admin_site.name))

    @admin.action(permissions=["delete"], description="Delete selected %(verbose_name_plural)s")
    def delete_selected(self, request, queryset):
        """Django's delete action, refused as a whole (with the reasons) when
        any selected object cannot be deleted."""
        blockers = [(obj, self.deletion_blocker(obj)) for obj in queryset]
        blockers = [(obj, reason) for obj, reason in blockers if reason]
        if not blockers:
            try:
                with transaction.atomic():  # the admin log entries go with the deletions
                    return django_delete_selected(self, request, queryset)
            except Refused as refused:
                self.message_user(request, f"Nothing was deleted: {refused}", messages.ERROR)
                return None
        for obj, reason in blockers:
            self.message_user(request, f"Nothing was deleted: cannot delete {obj}: {reason}", messages.ERROR)
        return None

    # --- helpers for read-only displays ----------------------------------------
    def audit_link(self, registry_name: str, object_name: str, label: str = "audit trail"):
        url = reverse("admin:connected_auditevent_changelist", current_app=self.admin_site.name)
        query = urlencode({"registry_name": registry_name, "object_name": object_name})
        return format_html('<a href="{}?{}">{}</a>', url, query, label)


def admin_link(obj, label=None):
    """A link to obj's change page in the admin (or its text when obj is None)."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else str(obj))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Views only: nobody adds, changes or deletes through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
