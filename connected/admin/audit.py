"""The audit trail in the admin: read-only for everyone (events are written
by the operations, in the same transaction as the change they record)."""
from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from ..audit import AuditEvent
from .base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "actor", "source", "action", "object_type", "object_name", "registry_name",
                    "changes_summary")
    # object_name is filtered through the links on each object's page (?object_name=...).
    list_filter = ("source", "action", "object_type", "registry_name")
    search_fields = ("actor", "object_name", "registry_name", "action")
    date_hierarchy = "timestamp"
    fields = ("timestamp", "actor", "source", "action", "object_type", "object_name", "registry_name",
              "changes_display")
    readonly_fields = fields

    @admin.display(description="changes")
    def changes_summary(self, obj):
        return ", ".join(obj.changes or {}) or "-"

    @admin.display(description="changes")
    def changes_display(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, sort_keys=True, default=str))
