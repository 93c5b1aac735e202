"""Sync tokens and scope maps in the admin. A token never shows a password
or its hash: only which slots are set, when they were made and when they
expire. Status changes and deletions go through connected.credentials."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.utils.html import format_html, format_html_join

from .. import credentials
from ..models import ScopeMap, Token
from .base import OperationAdmin, OperationForm, ReadOnlyAdmin, Refused, admin_actor, admin_link, refusal_text

def slot_text(token: Token, slot: int) -> str:
    """'set, created ..., expires ...' or 'not set': never the value or its hash."""
    if not getattr(token, f"password{slot}_hash"):
        return "not set"
    created = getattr(token, f"password{slot}_created_at")
    expires = getattr(token, f"password{slot}_expires_at")
    return (f"set, created {created:%Y-%m-%d %H:%M} UTC, " if created else "set, ") + \
        (f"expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "never expires")


@admin.register(ScopeMap)
class ScopeMapAdmin(ReadOnlyAdmin):
    """Scope maps are views: a sync scope map is kept in step with its
    connected registry by the operations, and no operation edits one by hand."""

    list_display = ("name", "registry", "sync_token", "repository_count", "updated_at")
    list_filter = ("registry",)
    search_fields = ("name", "description")
    list_select_related = ("registry",)
    fields = ("name", "registry", "description", "tokens_display", "actions_display", "created_at", "updated_at")

    def get_queryset(self, request):
        token = Token.objects.filter(scope_map=OuterRef("pk")).order_by("pk")
        return super().get_queryset(request).annotate(token_name=Subquery(token.values("name")[:1]))

    @admin.display(description="token", ordering="token_name")
    def sync_token(self, obj):
        return obj.token_name or "-"

    @admin.display(description="repositories")
    def repository_count(self, obj):
        return len(obj.repositories())

    @admin.display(description="actions")
    def actions_display(self, obj):
        return format_html("<pre>{}</pre>", "\n".join(obj.actions))

    @admin.display(description="tokens")
    def tokens_display(self, obj):
        return format_html_join(", ", "{}", ((admin_link(t),) for t in obj.tokens.all())) or "-"


class TokenForm(OperationForm):
    class Meta:
        model = Token
        # Only the status: the password hashes are not editable fields, and no
        # field, column or read-only display of this admin names them.
        fields = ("status",)


@admin.register(Token)
class TokenAdmin(OperationAdmin):
    form = TokenForm
    list_display = ("name", "registry", "connected_registry", "status", "password1", "password2", "updated_at")
    list_filter = ("status", "registry")
    search_fields = ("name", "connected_registry__name")
    list_select_related = ("registry", "connected_registry")
    fields = ("name", "registry", "connected_registry", "scope_map", "status", "password1", "password2",
              "created_at", "updated_at", "audit_trail")
    readonly_fields = ("name", "registry", "connected_registry", "scope_map", "password1", "password2",
                       "created_at", "updated_at", "audit_trail")
    actions = ["disable", "enable", "delete_selected"]

    @admin.display(description="password1 slot")
    def password1(self, obj):
        return slot_text(obj, 1)

    @admin.display(description="password2 slot")
    def password2(self, obj):
        return slot_text(obj, 2)

    @admin.display(description="audit trail")
    def audit_trail(self, obj):
        return self.audit_link(obj.registry.name, obj.name, f"events of {obj.name}")

    def has_add_permission(self, request):
        # Sync tokens are made with their connected registry (no operation makes another).
        return False

    def save_model(self, request, obj, form, change):
        if "status" not in form.changed_data:
            return
        fresh = Token.objects.select_related("registry", "connected_registry__registry").get(pk=obj.pk)
        try:
            credentials.update_token_status(fresh, form.cleaned_data["status"], actor=admin_actor(request))
        except ValidationError as e:
            raise Refused(e) from None
        obj.refresh_from_db()

    def deletion_blocker(self, obj):
        return obj.deletion_blocker()

    def delete_with_operation(self, request, obj):
        credentials.delete_token(obj, actor=admin_actor(request))

    def _status(self, request, queryset, status):
        actor, done = admin_actor(request), []
        for token in queryset.select_related("registry", "connected_registry__registry"):
            if token.status == status:
                self.message_user(request, f"{token.name} is already {status}.", messages.INFO)
                continue
            try:
                credentials.update_token_status(token, status, actor=actor)
            except ValidationError as e:
                self.message_user(request, f"{token.name}: {refusal_text(e)}", messages.ERROR)
            else:
                done.append(token.name)
        if done:
            self.message_user(request, f"{status.capitalize()}: {', '.join(done)}.", messages.SUCCESS)

    @admin.action(description="Disable selected tokens (stops their sync)", permissions=["change"])
    def disable(self, request, queryset):
        self._status(request, queryset, Token.Status.DISABLED)

    @admin.action(description="Enable selected tokens", permissions=["change"])
    def enable(self, request, queryset):
        self._status(request, queryset, Token.Status.ENABLED)
