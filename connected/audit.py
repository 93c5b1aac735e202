"""Who changed what and when: the audit trail.

Every changing operation in connected.operations and connected.credentials
takes an Actor and records one AuditEvent per object it changes, inside the
same transaction, so a change and its record are stored together or not at
all. The changes never hold a secret: record() refuses keys that could carry
one, and password generation records only the slot.
"""
from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass

from django.db import models
from django.utils import timezone


class Source(models.TextChoices):
    CLI = "cli"
    WEB = "web"
    ADMIN = "admin"
    API = "api"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who asks for a change, and through which door."""

    name: str
    source: str = Source.SYSTEM

    @classmethod
    def system(cls) -> "Actor":
        return cls("system", Source.SYSTEM)

    @classmethod
    def cli(cls) -> "Actor":
        """The operating-system user running `python manage.py acr`."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # a container user without a passwd entry
            name = f"uid:{os.getuid()}"
        return cls(name, Source.CLI)


SYSTEM = Actor.system()

# Keys that could carry a secret (a password, its hash); audit events name the
# slot instead.
SECRET_KEY_RE = re.compile(r"hash|secret|password\d?$|value|connection.?string", re.IGNORECASE)


class AuditEvent(models.Model):
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150)
    source = models.CharField(max_length=8, choices=Source.choices)
    action = models.CharField(max_length=64, help_text='e.g. "connectedRegistry.update"')
    object_type = models.CharField(max_length=32)
    object_name = models.CharField(max_length=100)
    registry_name = models.CharField(max_length=50, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [old, new]}; never a secret")

    class Meta:
        app_label = "connected"
        ordering = ["-timestamp", "-pk"]
        indexes = [models.Index(fields=["registry_name", "object_type", "object_name"])]

    def __str__(self):
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor} ({self.source}) {self.action} {self.object_name}"


def changed(before: dict, after: dict) -> dict:
    """{field: [old, new]} for the fields whose value differs (a field
    missing on one side counts as None: creation and deletion)."""
    keys = list(before) + [key for key in after if key not in before]
    return {key: [before.get(key), after.get(key)] for key in keys if before.get(key) != after.get(key)}


def record(actor: Actor | None, action: str, object_type: str, object_name: str, registry_name: str = "",
           changes: dict | None = None) -> AuditEvent:
    actor = actor or SYSTEM
    changes = changes or {}
    secret_keys = [key for key in changes if SECRET_KEY_RE.search(key)]
    if secret_keys:
        raise ValueError(f"audit events never hold secrets; refusing keys {secret_keys}")
    if actor.source not in Source.values:
        raise ValueError(f"unknown actor source '{actor.source}'")
    return AuditEvent.objects.create(actor=actor.name[:150], source=actor.source, action=action,
                                     object_type=object_type, object_name=object_name,
                                     registry_name=registry_name, changes=changes)
