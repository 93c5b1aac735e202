"""Sync tokens and their scope maps: the models and the product's naming and
action rules (see the reference's "Sync token and scope map").

Each connected registry has one sync token, `<name>-sync-token`, whose scope
map `<name>-sync-scope-map` lists what it may sync. The token keeps two
password slots; only a hash of each password is stored
(django.contrib.auth.hashers), the clear value is shown once at generation.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time

from django.apps import apps
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from . import validation

READ_ACTIONS = ("content/read", "metadata/read")
WRITE_ACTIONS = ("content/write", "content/delete", "metadata/write")
GATEWAY_ACTIONS = ("config/read", "config/write", "message/read", "message/write")


def sync_token_name(connected_registry_name: str) -> str:
    return f"{connected_registry_name}-sync-token"


def sync_scope_map_name(connected_registry_name: str) -> str:
    return f"{connected_registry_name}-sync-scope-map"


def sync_scope_actions(connected_registry_name: str, mode: str, repositories) -> list[str]:
    """The actions of a sync scope map, repository by repository, then the
    gateway's; lower-cased names, as the reference lists them."""
    per_repo = READ_ACTIONS + (WRITE_ACTIONS if mode == "ReadWrite" else ())
    actions = [f"repositories/{repo.lower()}/{action}" for repo in repositories for action in per_repo]
    gateway = connected_registry_name.lower()
    return actions + [f"gateway/{gateway}/{action}" for action in GATEWAY_ACTIONS]


def repositories_of(actions) -> list[str]:
    """The repositories a list of actions grants something on, in order."""
    repos: list[str] = []
    for action in actions:
        parts = action.split("/")
        if parts[0] == "repositories" and len(parts) >= 4:
            repo = "/".join(parts[1:-2])
            if repo not in repos:
                repos.append(repo)
    return repos


# Verified passwords, remembered briefly in this process: a sync asks the
# token service once per scope, and each slow hash check (PBKDF2, by design)
# would otherwise cost a quarter of a second. The key is the stored hash, so a
# new password invalidates the entry; the value is an HMAC of the presented
# password under a per-process random key, compared in constant time. Failed
# checks are never remembered.
_VERIFIED: dict[str, tuple[bytes, float]] = {}
_VERIFIED_KEY = secrets.token_bytes(32)
VERIFIED_FOR_SECONDS = 300.0


def _presented(clear: str) -> bytes:
    return hmac.new(_VERIFIED_KEY, clear.encode(), hashlib.sha256).digest()


def password_remembered(clear: str, stored_hash: str) -> bool:
    """Whether clear was verified against stored_hash in this process within
    VERIFIED_FOR_SECONDS: an HMAC comparison, no slow hash."""
    remembered = _VERIFIED.get(stored_hash)
    return remembered is not None and remembered[1] > time.monotonic() and hmac.compare_digest(
        remembered[0], _presented(clear))


def password_matches(clear: str, stored_hash: str) -> bool:
    """check_password, with recent successes remembered (see _VERIFIED)."""
    if password_remembered(clear, stored_hash):
        return True
    if not check_password(clear, stored_hash):
        return False
    if len(_VERIFIED) > 10_000:
        _VERIFIED.clear()
    _VERIFIED[stored_hash] = (_presented(clear), time.monotonic() + VERIFIED_FOR_SECONDS)
    return True


class ScopeMap(models.Model):
    registry = models.ForeignKey("connected.Registry", on_delete=models.CASCADE, related_name="scope_maps")
    name = models.CharField(max_length=80)
    actions = models.JSONField(default=list, help_text="One action per entry, e.g. repositories/hello-world/content/read")
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "connected"
        ordering = ["registry__name", "name"]
        constraints = [models.UniqueConstraint("registry", Lower("name"), name="scope_map_name_unique_ci")]

    def __str__(self):
        return self.name

    def clean(self):
        if not isinstance(self.actions, list) or not all(isinstance(a, str) and a for a in self.actions):
            raise ValidationError({"actions": ["actions are a list of non-empty strings."]})
        count = len(repositories_of(self.actions))
        if count > validation.MAX_REPOSITORIES_PER_SCOPE_MAP:
            raise ValidationError({"repositories": [
                f"scope map '{self.name}' would grant {count} repositories, more than the limit of "
                f"{validation.MAX_REPOSITORIES_PER_SCOPE_MAP} per scope map."]})
        if self.registry_id and ScopeMap.objects.filter(registry_id=self.registry_id, name__iexact=self.name) \
                .exclude(pk=self.pk).exists():
            raise ValidationError({"name": [f"a scope map named '{self.name}' already exists."]})

    def repositories(self) -> list[str]:
        return repositories_of(self.actions)


class Token(models.Model):
    """A token of a registry. A sync token belongs to one connected registry
    (connected_registry); a client token has connected_registry None and may
    be attached to connected registries (client_of), whose token service then
    accepts it. Every token is accepted by its registry's own service, with
    its scope map (see connected.tokenservice)."""

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    registry = models.ForeignKey("connected.Registry", on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=80)
    scope_map = models.ForeignKey(ScopeMap, on_delete=models.RESTRICT, related_name="tokens")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ENABLED)
    connected_registry = models.OneToOneField("connected.ConnectedRegistry", null=True, blank=True,
                                              on_delete=models.CASCADE, related_name="sync_token")
    password1_hash = models.CharField(max_length=256, blank=True, default="", editable=False)
    password1_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    password1_expires_at = models.DateTimeField(null=True, blank=True)
    password2_hash = models.CharField(max_length=256, blank=True, default="", editable=False)
    password2_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    password2_expires_at = models.DateTimeField(null=True, blank=True)
    client_of = models.ManyToManyField("connected.ConnectedRegistry", blank=True, related_name="client_tokens",
                                       help_text="Connected registries whose clients may use this token")
    # The sync engine presents the sync token's newest password to the token
    # service; its copy is Fernet-encrypted (connected.tokenservice.sealed),
    # never in clear here or in a log.
    worker_password_sealed = models.TextField(blank=True, default="", editable=False)
    worker_password_slot = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "connected"
        ordering = ["registry__name", "name"]
        constraints = [models.UniqueConstraint("registry", Lower("name"), name="token_name_unique_ci")]

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        try:
            self.status = validation.validate_token_status(self.status)
        except ValidationError as e:
            errors.update(e.message_dict)
        if self.scope_map_id and self.registry_id and self.scope_map.registry_id != self.registry_id:
            errors["scope_map"] = [f"scope map '{self.scope_map.name}' belongs to another registry."]
        if self.registry_id and Token.objects.filter(registry_id=self.registry_id, name__iexact=self.name) \
                .exclude(pk=self.pk).exists():
            errors["name"] = [f"a token named '{self.name}' already exists."]
        if errors:
            raise ValidationError(errors)

    # --- passwords ----------------------------------------------------------
    def set_password(self, slot: int, clear: str, expires_at: dt.datetime | None = None,
                     now: dt.datetime | None = None) -> None:
        """Store a hash of clear in slot 1 or 2; the other slot is untouched."""
        slot = validation.validate_password_slot(slot)
        setattr(self, f"password{slot}_hash", make_password(clear))
        setattr(self, f"password{slot}_created_at", now or timezone.now())
        setattr(self, f"password{slot}_expires_at", expires_at)

    def is_sync_token(self) -> bool:
        return self.connected_registry_id is not None

    def matching_slot(self, clear: str, now: dt.datetime | None = None) -> tuple[int | None, bool]:
        """(the slot whose password is clear, whether it has expired); (None,
        False) when no slot matches. check_password compares in constant time."""
        now = now or timezone.now()
        for slot in validation.PASSWORD_SLOTS:
            stored = getattr(self, f"password{slot}_hash")
            if stored and password_matches(clear, stored):
                expires = getattr(self, f"password{slot}_expires_at")
                return slot, expires is not None and expires <= now
        return None, False

    def remembered_slot(self, clear: str, now: dt.datetime | None = None) -> int | None:
        """The slot whose unexpired password clear was recently verified to be
        in this process (see password_remembered), else None. Cheap: it lets the
        holder of the right password through while others' failures have its
        address slowed down, without a slow hash per attempt."""
        return self._unexpired_slot(clear, password_remembered, now)

    def verify_password(self, clear: str, now: dt.datetime | None = None) -> int | None:
        """The slot (1 or 2) whose unexpired password is clear, else None."""
        return self._unexpired_slot(clear, password_matches, now)

    def _unexpired_slot(self, clear: str, matches, now: dt.datetime | None) -> int | None:
        now = now or timezone.now()
        for slot in validation.PASSWORD_SLOTS:
            stored = getattr(self, f"password{slot}_hash")
            expires = getattr(self, f"password{slot}_expires_at")
            if stored and (expires is None or expires > now) and matches(clear, stored):
                return slot
        return None

    def has_password(self, slot: int) -> bool:
        """Whether slot holds a password (replacing it cuts off whoever uses it)."""
        return bool(getattr(self, f"password{slot}_hash"))

    def passwords(self) -> list[dict]:
        """The generated password slots: name, creation and expiry; never a value."""
        return [{"name": f"password{slot}",
                 "created_at": getattr(self, f"password{slot}_created_at"),
                 "expires_at": getattr(self, f"password{slot}_expires_at")}
                for slot in validation.PASSWORD_SLOTS if self.has_password(slot)]

    # --- deletion -------------------------------------------------------------
    def deletion_blocker(self) -> str | None:
        """Why this token cannot be deleted now, or None."""
        connected_registry = apps.get_model("connected", "ConnectedRegistry")
        if self.connected_registry_id and connected_registry.objects.filter(pk=self.connected_registry_id).exists():
            return (f"'{self.name}' is the sync token of connected registry '{self.connected_registry.name}' "
                    "and cannot be deleted while it exists; disable it instead (--status disabled) "
                    "or delete the connected registry.")
        return None

    def delete(self, *args, **kwargs):
        # Deleting a connected registry removes its token by cascade (which
        # does not call this); a token on its own must not orphan one.
        blocker = self.deletion_blocker()
        if blocker:
            raise ValidationError({"name": [blocker]})
        return super().delete(*args, **kwargs)
