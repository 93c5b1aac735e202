"""The pages' forms. They carry values and show errors; they hold no rule.

Every field is optional to Django: whether a value is acceptable is decided by
connected.validation through the operations (model.full_clean), whose
ValidationError, keyed by field, comes back with `add_operation_errors`.
"""
from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError

from . import validation

CONTINUOUS, SCHEDULED = "continuous", "scheduled"
SYNC_TYPES = ((CONTINUOUS, "Continuous"), (SCHEDULED, "Scheduled (cron and window)"))


def split_repositories(text: str) -> list[str]:
    """Repositories typed one per line, or separated by spaces or commas."""
    return [part for part in re.split(r"[\s,]+", text or "") if part]


class OperationForm(forms.Form):
    """A form whose errors come from an operation."""

    # Operation error keys that are not this form's field names.
    field_aliases: dict[str, str] = {}

    def add_operation_errors(self, error: ValidationError) -> None:
        from .views.base import errors_by_field

        for key, messages in errors_by_field(error).items():
            field = self.field_aliases.get(key, key)
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class SyncPropertiesMixin(forms.Form):
    sync_type = forms.CharField(required=False, initial=CONTINUOUS,
                                widget=forms.RadioSelect(choices=SYNC_TYPES))
    sync_schedule = forms.CharField(required=False, label="Sync schedule (cron, UTC)",
                                    widget=forms.TextInput(attrs={"placeholder": "0 12 * * *",
                                                                  "autocomplete": "off", "spellcheck": "false"}))
    sync_window = forms.CharField(required=False, label="Sync window (ISO 8601 duration)",
                                  widget=forms.TextInput(attrs={"placeholder": validation.DEFAULT_SYNC_WINDOW,
                                                                "autocomplete": "off"}))
    message_ttl = forms.CharField(required=False, label="Message TTL (ISO 8601 duration)",
                                  initial=validation.DEFAULT_MESSAGE_TTL,
                                  widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def is_scheduled(self) -> bool:
        return self.data.get("sync_type", CONTINUOUS) == SCHEDULED

    def sync_values(self) -> dict:
        """schedule, window and TTL as the operations take them: continuous
        sync is the continuous cron (and leaves the window as it is)."""
        data = self.cleaned_data
        if self.is_scheduled():
            schedule, window = data.get("sync_schedule", ""), data.get("sync_window") or None
        else:
            schedule, window = validation.CONTINUOUS_SCHEDULE, None
        return {"sync_schedule": schedule, "sync_window": window,
                "message_ttl": data.get("message_ttl") or None}


class ConnectedRegistryCreateForm(OperationForm, SyncPropertiesMixin):
    name = forms.CharField(required=False, widget=forms.TextInput(attrs={"autocomplete": "off",
                                                                         "spellcheck": "false"}))
    mode = forms.CharField(required=False, initial=validation.MODES[0],
                           widget=forms.Select(choices=[(m, m) for m in validation.MODES]))
    parent = forms.CharField(required=False, widget=forms.Select())
    repositories = forms.CharField(required=False, help_text="One per line (or separated by spaces or commas).",
                                   widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}))
    field_order = ["name", "mode", "parent", "repositories", "sync_type", "sync_schedule", "sync_window",
                   "message_ttl"]
    field_aliases = {"registry": "__all__", "sync": "__all__"}

    def __init__(self, *args, registry, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", f"{registry.name} (the registry)")]
        choices += [(name, name) for name in registry.connected_registries.order_by("name")
                    .values_list("name", flat=True)]
        self.fields["parent"].widget.choices = choices

    def repository_list(self) -> list[str]:
        return split_repositories(self.cleaned_data.get("repositories", ""))


class SyncPropertiesForm(OperationForm, SyncPropertiesMixin):
    log_level = forms.CharField(required=False, widget=forms.Select(choices=[(v, v) for v in validation.LOG_LEVELS]))

    def update_values(self) -> dict:
        """The values for update_connected_registry: a field left out of the
        POST keeps its value; one sent empty is checked (and refused) as the
        empty value it is, as the CLI does."""
        values = self.sync_values()
        for field in ("message_ttl", "log_level"):
            values[field] = self.cleaned_data.get(field, "") if field in self.data else None
        return values

    @classmethod
    def for_connected_registry(cls, cr, data=None):
        initial = {"sync_type": CONTINUOUS if cr.is_continuous() else SCHEDULED,
                   "sync_schedule": "" if cr.is_continuous() else cr.sync_schedule,
                   "sync_window": cr.sync_window or "", "message_ttl": cr.message_ttl, "log_level": cr.log_level}
        return cls(data, initial=initial)


class RepositoriesForm(OperationForm):
    add = forms.CharField(required=False, label="Add repositories",
                          widget=forms.TextInput(attrs={"placeholder": "app/backend", "autocomplete": "off",
                                                        "spellcheck": "false"}))
    remove = forms.CharField(required=False, widget=forms.HiddenInput())
    field_aliases = {"repositories": "add"}


class ActivateForm(OperationForm):
    login_server = forms.CharField(required=False, label="Login server of the deployed instance",
                                   widget=forms.TextInput(attrs={"placeholder": "http://10.0.0.5:5000",
                                                                 "autocomplete": "off"}))


class DeleteForm(forms.Form):
    confirm_name = forms.CharField(required=False, label="Type the name to confirm",
                                   widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))


class GeneratePasswordForm(OperationForm):
    password = forms.CharField(required=False)
    parent_protocol = forms.CharField(required=False, initial="https",
                                      widget=forms.Select(choices=[(p, p) for p in validation.PARENT_PROTOCOLS]))
    field_aliases = {"generate_password": "password", "name": "__all__"}
