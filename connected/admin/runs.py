"""Sync runs and their tag ledger: produced by the workers, viewed here."""
from __future__ import annotations

from django.contrib import admin

from ..models import SyncRun, SyncRunTag
from .base import ReadOnlyAdmin


class SyncRunTagInline(admin.TabularInline):
    model = SyncRunTag
    fields = ("repository", "tag", "outcome", "digest", "bytes_moved", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "connected_registry", "registry_name", "trigger", "scope", "status", "queued_at",
                    "started_at", "finished_at", "tags_copied", "tags_skipped", "tags_deleted", "tags_failed",
                    "bytes_moved", "worker")
    list_filter = ("status", "trigger", "scope", "connected_registry__registry", "connected_registry")
    search_fields = ("connected_registry__name", "worker", "error")
    list_select_related = ("connected_registry__registry",)
    date_hierarchy = "queued_at"
    inlines = [SyncRunTagInline]

    @admin.display(description="registry", ordering="connected_registry__registry__name")
    def registry_name(self, obj):
        return obj.connected_registry.registry.name
