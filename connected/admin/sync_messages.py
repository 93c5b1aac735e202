"""Sync messages, the registry events they come from, and the registries
that send events, in the admin: views for support staff. They come from the
registries (connected.events), so nobody adds or changes them here; a
superuser may delete. An event source never shows its secret, nor the digest
of it the portal keeps: no field, no column, no search."""
from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from ..audit import record
from ..messages import EventSource, ReceivedEvent, SyncMessage
from .base import ReadOnlyAdmin, admin_actor, admin_link


class DeletableBySuperusersAdmin(ReadOnlyAdmin):
    """Views for whoever may view; deletion for active superusers only."""

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


def changelist_link(admin_site, model: str, params: dict, label: str):
    url = reverse(f"admin:connected_{model}_changelist", current_app=admin_site.name)
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), label)


# --- sync messages ---------------------------------------------------------------------

class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("pending", "pending"), ("applied", "applied"), ("expired", "expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "pending":
            return queryset.pending(now)
        if self.value() == "applied":
            return queryset.filter(acknowledged_at__isnull=False)
        if self.value() == "expired":
            return queryset.expired(now)
        return queryset


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(acknowledged_at__isnull=self.value() == "no")
        return queryset


@admin.register(SyncMessage)
class SyncMessageAdmin(DeletableBySuperusersAdmin):
    list_display = ("id", "connected_registry", "registry_name", "action", "subject_display", "direction",
                    "origin", "created_at", "expires_at", "status_display", "acknowledged_by")
    list_filter = ("action", "direction", AcknowledgedFilter, StatusFilter, "connected_registry__registry",
                   "connected_registry")
    search_fields = ("repository", "tag")
    list_select_related = ("connected_registry__registry",)
    date_hierarchy = "created_at"
    fields = ("connected_registry", "action", "subject_display", "repository", "tag", "digest", "direction",
              "origin", "event_link", "created_at", "expires_at", "status_display", "run_link", "acknowledged_at",
              "acknowledged_by")
    readonly_fields = fields

    @admin.display(description="registry", ordering="connected_registry__registry__name")
    def registry_name(self, obj):
        return obj.connected_registry.registry.name

    @admin.display(description="subject", ordering="repository")
    def subject_display(self, obj):
        return obj.subject()

    @admin.display(description="status")
    def status_display(self, obj):
        return obj.status()

    @admin.display(description="event")
    def event_link(self, obj):
        return admin_link(obj.event) if obj.event_id else "-"

    @admin.display(description="taken by run")
    def run_link(self, obj):
        return admin_link(obj.taken_by_run) if obj.taken_by_run_id else "-"


# --- registry events ---------------------------------------------------------------------

@admin.register(ReceivedEvent)
class ReceivedEventAdmin(DeletableBySuperusersAdmin):
    list_display = ("received_at", "source", "event_id", "action", "subject_display", "actor", "messages_created",
                    "note")
    list_filter = ("action", "source__registry")
    search_fields = ("repository", "tag", "event_id", "actor")
    list_select_related = ("source__registry", "source__connected_registry")
    date_hierarchy = "received_at"
    fields = ("source", "event_id", "action", "repository", "tag", "digest", "actor", "occurred_at", "received_at",
              "messages_created", "messages_link", "note")
    readonly_fields = fields

    @admin.display(description="subject", ordering="repository")
    def subject_display(self, obj):
        return f"{obj.repository}:{obj.tag}" if obj.tag else f"{obj.repository}@{obj.digest}"

    @admin.display(description="sync messages")
    def messages_link(self, obj):
        return changelist_link(self.admin_site, "syncmessage", {"event__id__exact": obj.pk},
                               f"sync messages of event {obj.event_id}")


# --- event sources ---------------------------------------------------------------------------

@admin.register(EventSource)
class EventSourceAdmin(DeletableBySuperusersAdmin):
    """Which registries send events. The secret is shown once, when it is
    generated (acr events-secret generate); the digest the portal keeps to
    check it is not shown, nor searchable."""

    list_display = ("source_display", "registry", "connected_registry", "created_at", "last_event_at",
                    "event_count")
    list_filter = ("registry",)
    search_fields = ("registry__name", "connected_registry__name")
    list_select_related = ("registry", "connected_registry")
    fields = ("source_display", "registry", "connected_registry", "created_at", "last_event_at", "event_count",
              "events_link")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(event_count=Count("events"))

    @admin.display(description="source", ordering="registry__name")
    def source_display(self, obj):
        return obj.describe()

    @admin.display(description="events received", ordering="event_count")
    def event_count(self, obj):
        return obj.event_count

    @admin.display(description="events")
    def events_link(self, obj):
        return changelist_link(self.admin_site, "receivedevent", {"source__id__exact": obj.pk},
                               f"events of {obj.describe()}")

    def _delete_audited(self, request, obj) -> None:
        """Deleting a source revokes its secret: audited as the admin user."""
        if obj.connected_registry_id:
            record(admin_actor(request), "connectedRegistry.deleteEventsSecret", "connectedRegistry",
                   obj.connected_registry.name, obj.registry.name)
        else:
            record(admin_actor(request), "registry.deleteEventsSecret", "registry", obj.registry.name,
                   obj.registry.name)
        obj.delete()

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._delete_audited(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset.select_related("registry", "connected_registry"):
                self._delete_audited(request, obj)
