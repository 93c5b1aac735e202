"""Registries and connected registries in the admin: lists with their
state, and every change through connected.operations (audited as the admin
user)."""
from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from .. import credentials, operations, syncs, validation
from ..models import ConnectedRegistry, Registry, SyncRun, Token
from .base import OperationAdmin, OperationForm, Refused, admin_actor, admin_link, refusal_text

RUN_STATUS_LABELS = dict(SyncRun.Status.choices)


def become(obj, saved) -> None:
    """Make the admin's unsaved instance the row an operation created."""
    obj.pk = saved.pk
    obj.refresh_from_db()
    obj._state.adding = False
    obj.warnings = getattr(saved, "warnings", [])


# --- registries ---------------------------------------------------------------------

class RegistryForm(OperationForm):
    class Meta:
        model = Registry
        fields = "__all__"


@admin.register(Registry)
class RegistryAdmin(OperationAdmin):
    form = RegistryForm
    list_display = ("name", "login_server", "data_endpoint_enabled", "connected_count", "created_at")
    list_filter = ("data_endpoint_enabled",)
    search_fields = ("name", "login_server")
    actions = ["delete_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(connected_count=Count("connected_registries"))

    @admin.display(description="connected registries", ordering="connected_count")
    def connected_count(self, obj):
        url = reverse("admin:connected_connectedregistry_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?{}">{}</a>', url, urlencode({"registry__id__exact": obj.pk}),
                           obj.connected_count)

    @admin.display(description="audit trail")
    def audit_trail(self, obj):
        url = reverse("admin:connected_auditevent_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?{}">events of {}</a>', url, urlencode({"registry_name": obj.name}),
                           obj.name)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "login_server", "data_endpoint_enabled")
        return ("name", "login_server", "data_endpoint_enabled", "connected_count", "created_at", "updated_at",
                "audit_trail")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("name", "connected_count", "created_at", "updated_at", "audit_trail")

    def has_delete_permission(self, request, obj=None):
        # No operation deletes a registry (with its connected registries,
        # tokens and audit); the admin does not do it behind their back.
        return False

    def save_model(self, request, obj, form, change):
        actor, data = admin_actor(request), form.cleaned_data
        try:
            if not change:
                become(obj, operations.create_registry(data["name"], data["login_server"],
                                                       data_endpoint_enabled=data["data_endpoint_enabled"],
                                                       actor=actor))
                return
            fresh = Registry.objects.get(pk=obj.pk)
            changes = {field: data[field] for field in ("login_server", "data_endpoint_enabled")
                       if field in form.changed_data}
            if changes:
                operations.update_registry(fresh, actor=actor, **changes)
            obj.refresh_from_db()
        except ValidationError as e:
            raise Refused(e) from None


# --- connected registries -------------------------------------------------------------

class RepositoriesField(forms.CharField):
    """Repository names, one per line (commas and spaces also separate);
    the rules (connected.validation) judge them."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 60})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)  # "at least one" is the rule's message, not Django's
        kwargs.setdefault("help_text", "One repository per line, e.g. hello-world or app/frontend.")
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return "\n".join(value)
        return value

    def to_python(self, value):
        if isinstance(value, (list, tuple)):
            return list(value)
        return [part for part in re.split(r"[\s,]+", super().to_python(value) or "") if part]


class ConnectedRegistryForm(OperationForm):
    repositories = RepositoriesField()
    field_aliases = {"add": "repositories", "remove": "repositories"}

    class Meta:
        model = ConnectedRegistry
        fields = "__all__"
        widgets = {"log_level": forms.Select(choices=[(level, level) for level in validation.LOG_LEVELS])}
        help_texts = {
            "sync_schedule": "5-field cron expression, UTC; * * * * * is continuous sync.",
            "sync_window": "ISO 8601 duration, PT1H to P7D; only for a non-continuous schedule.",
            "message_ttl": "ISO 8601 duration, P1D to P90D.",
            "login_server": "Setting it activates the deployed instance at that URL (it must answer); "
                            "clearing it deactivates.",
        }


SYNC_FIELDS = ("sync_schedule", "sync_window", "message_ttl", "log_level")
STATE_FIELDS = ("activation_status", "connection_state", "status_details_display", "state_history",
                "last_sync_at", "last_activity_at", "sync_lock_owner", "sync_lock_expires_at")
STATE_HISTORY_SHOWN = 10
LINK_FIELDS = ("sync_token_link", "runs_link", "messages_link", "audit_trail", "created_at", "updated_at")


@admin.register(ConnectedRegistry)
class ConnectedRegistryAdmin(OperationAdmin):
    form = ConnectedRegistryForm
    list_display = ("name", "registry", "parent_display", "mode_value", "connection_state", "activation_status",
                    "login_server", "last_sync_at", "sync_schedule", "window", "latest_run", "sync_token_status")
    list_filter = ("registry", "mode", "connection_state", "activation_status")
    search_fields = ("name", "repositories", "login_server")
    list_select_related = ("registry", "parent", "sync_token")
    actions = ["sync_now", "deactivate", "disable_sync_token", "enable_sync_token", "delete_selected"]

    def get_queryset(self, request):
        latest = SyncRun.objects.filter(connected_registry=OuterRef("pk")).order_by("-queued_at", "-pk")
        return super().get_queryset(request).annotate(latest_run_status=Subquery(latest.values("status")[:1]),
                                                      latest_run_id=Subquery(latest.values("pk")[:1]))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ("registry", "parent", "name", "mode", "repositories")}),
                    ("Sync", {"fields": SYNC_FIELDS}),
                    ("Deployed instance", {"fields": ("login_server",),
                                           "description": "Leave empty until an instance is deployed."})]
        return [(None, {"fields": ("registry", "parent_display", "name", "mode", "repositories")}),
                ("Sync", {"fields": SYNC_FIELDS}),
                ("Deployed instance", {"fields": ("login_server",) + STATE_FIELDS}),
                ("Related", {"fields": LINK_FIELDS})]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Mode and parent are chosen once; there is no rename operation.
        return ("registry", "parent_display", "name", "mode") + STATE_FIELDS + LINK_FIELDS

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if "parent" in form.base_fields:
            form.base_fields["parent"].queryset = ConnectedRegistry.objects.select_related("registry")
            form.base_fields["parent"].help_text = "Empty: the registry itself. Cannot be changed later."
        return form

    # --- columns and read-only displays ----------------------------------------------
    @admin.display(description="parent", ordering="parent__name")
    def parent_display(self, obj):
        if obj.parent_id:
            return obj.parent.name
        return f"{obj.registry.name} (the registry)"

    @admin.display(description="mode", ordering="mode")
    def mode_value(self, obj):
        return obj.mode  # ReadWrite, as the CLI and the reference spell it (the choice label is "Read Write")

    @admin.display(description="window")
    def window(self, obj):
        return obj.sync_window_display()

    @admin.display(description="latest run", ordering="latest_run_status")
    def latest_run(self, obj):
        status = getattr(obj, "latest_run_status", None)
        if not status:
            return "-"
        url = reverse("admin:connected_syncrun_change", args=[obj.latest_run_id], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, RUN_STATUS_LABELS.get(status, status))

    @admin.display(description="sync token")
    def sync_token_status(self, obj):
        token = obj.sync_token_or_none()
        return token.status if token is not None else "-"

    @admin.display(description="status details")
    def status_details_display(self, obj):
        details = obj.current_status_details()
        if not details:
            return "-"
        return format_html_join("", "<div>{} {} ({}): {}</div>",
                                ((d.get("timestamp", ""), d.get("type", ""), d.get("code", ""),
                                  d.get("description", "")) for d in details))

    @admin.display(description="state history")
    def state_history(self, obj):
        """The newest changes of the connection state, with their reasons (as on the detail page)."""
        changes = obj.state_changes.all()[:STATE_HISTORY_SHOWN]
        if not changes:
            return "-"
        return format_html_join("", "<div>{}: {} &rarr; {}{}</div>", (
            (f"{c.at:%Y-%m-%d %H:%M:%S} UTC", c.previous_state, c.state,
             "".join(f" · {d.get('code', '')}: {d.get('description', '')}" for d in c.status_details))
            for c in changes))

    @admin.display(description="sync token")
    def sync_token_link(self, obj):
        token = obj.sync_token_or_none()
        if token is None:
            return "-"
        return admin_link(token, f"{token.name} ({token.status})")

    @admin.display(description="runs")
    def runs_link(self, obj):
        url = reverse("admin:connected_syncrun_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?{}">sync runs of {}</a>', url,
                           urlencode({"connected_registry__id__exact": obj.pk}), obj.name)

    @admin.display(description="sync messages")
    def messages_link(self, obj):
        url = reverse("admin:connected_syncmessage_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?{}">sync messages of {}</a>', url,
                           urlencode({"connected_registry__id__exact": obj.pk}), obj.name)

    @admin.display(description="audit trail")
    def audit_trail(self, obj):
        return self.audit_link(obj.registry.name, obj.name, f"events of {obj.name}")

    # --- changes: the operations ------------------------------------------------------
    def save_model(self, request, obj, form, change):
        actor, data = admin_actor(request), form.cleaned_data
        try:
            if not change:
                become(obj, operations.create_connected_registry(
                    data["registry"], data["name"], data["repositories"], mode=data["mode"], parent=data["parent"],
                    login_server=data["login_server"], sync_schedule=data["sync_schedule"],
                    sync_window=data["sync_window"], message_ttl=data["message_ttl"],
                    log_level=data["log_level"], actor=actor))
            else:
                self._change(obj, form, actor)
        except ValidationError as e:
            raise Refused(e) from None
        for warning in getattr(obj, "warnings", []):
            self.message_user(request, warning, messages.WARNING)

    def _change(self, obj, form, actor) -> None:
        data, changed = form.cleaned_data, set(form.changed_data)
        fresh = ConnectedRegistry.objects.select_related("registry", "parent").get(pk=obj.pk)
        warnings = []
        with transaction.atomic():
            if "repositories" in changed:
                operations.set_repositories(fresh, data["repositories"], actor=actor)
            properties = {field: data[field] or "" for field in SYNC_FIELDS if field in changed}
            if properties:
                operations.update_connected_registry(fresh, actor=actor, **properties)
                warnings += getattr(fresh, "warnings", [])
            if "login_server" in changed:
                if data["login_server"]:
                    operations.activate_connected_registry(fresh, data["login_server"], actor=actor)
                    warnings += getattr(fresh, "warnings", [])
                else:
                    operations.deactivate_connected_registry(fresh, actor=actor)
        obj.refresh_from_db()
        obj.warnings = warnings

    def deletion_blocker(self, obj):
        return operations.deletion_blocker(obj)

    def delete_with_operation(self, request, obj):
        operations.delete_connected_registry(obj, actor=admin_actor(request))

    def get_deleted_objects(self, objs, request):
        # Its runs and sync token go with it, by the operation: deleting a
        # connected registry needs only the permission to delete it.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if self.has_delete_permission(request):
            perms_needed = set()
        return deleted, counts, perms_needed, protected

    # --- actions ----------------------------------------------------------------------
    def _each(self, request, queryset, verb, operation):
        """Run operation(cr, actor) on each selected connected registry; report
        each refusal and the count of those done."""
        actor, done = admin_actor(request), []
        for cr in queryset.select_related("registry", "parent", "sync_token"):
            try:
                result = operation(cr, actor)
            except ValidationError as e:
                self.message_user(request, f"{cr.name}: {refusal_text(e)}", messages.ERROR)
                continue
            if result is not False:
                done.append(result if isinstance(result, str) else cr.name)
        if done:
            self.message_user(request, f"{verb}: {', '.join(done)}.", messages.SUCCESS)

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request, queryset):
        def sync(cr, actor):
            run = syncs.queue_sync(cr, SyncRun.Trigger.MANUAL, actor=actor)
            return f"{cr.name} (run {run.pk})"
        self._each(request, queryset, "Sync queued", sync)

    @admin.action(description="Deactivate (unbind the deployed instance)", permissions=["change"])
    def deactivate(self, request, queryset):
        def deactivate(cr, actor):
            if cr.activation_status == ConnectedRegistry.Activation.INACTIVE and not cr.login_server:
                self.message_user(request, f"{cr.name} is already inactive.", messages.INFO)
                return False
            operations.deactivate_connected_registry(cr, actor=actor)
        self._each(request, queryset, "Deactivated", deactivate)

    def _token_status(self, request, queryset, status, verb):
        def update(cr, actor):
            token = credentials.sync_token_of(cr)
            if token.status == status:
                self.message_user(request, f"The sync token of {cr.name} is already {status}.", messages.INFO)
                return False
            credentials.update_token_status(token, status, actor=actor)
        self._each(request, queryset, verb, update)

    @admin.action(description="Disable sync token (stops sync)", permissions=["change"])
    def disable_sync_token(self, request, queryset):
        self._token_status(request, queryset, Token.Status.DISABLED, "Sync token disabled")

    @admin.action(description="Enable sync token", permissions=["change"])
    def enable_sync_token(self, request, queryset):
        self._token_status(request, queryset, Token.Status.ENABLED, "Sync token enabled")
