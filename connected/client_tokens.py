"""Client tokens: tokens that local clients (docker, containerd, skopeo) use,
against the registry and, once attached, against connected registries.

`acr token create --repository REPO ACTION ...` makes the token with a scope
map of its own, `<token>-scope-map` (as az does); `--scope-map M` reuses one.
Both passwords are generated and shown once unless --no-passwords.
`acr connected-registry update --add-client-tokens/--remove-client-tokens`
attaches and detaches, at most MAX_CLIENT_TOKENS per connected registry.
Every change is audited with its actor, never a password.
"""
from __future__ import annotations

from django.conf import settings
from django.db import transaction

from . import validation
from .audit import SYSTEM, Actor, record
from .credentials import generate_password, get_scope_map, get_token
from .models import ConnectedRegistry, Registry, ScopeMap, Token
from .operations import NotFound


def own_scope_map_name(token_name: str) -> str:
    return f"{token_name}-scope-map"


def create_client_token(registry: Registry, name: str, repositories=None, scope_map: str | None = None,
                        status: str = "enabled", passwords: bool = True, expiration_in_days=None,
                        actor: Actor = SYSTEM) -> tuple[Token, list[dict]]:
    """(the token, the generated passwords, shown once)."""
    validation.validate_token_name(name)
    status = validation.validate_token_status(status)
    if bool(repositories) == bool(scope_map):
        validation.fail("repository", "give either --repository REPO ACTION ... or --scope-map NAME (one of them).")
    if expiration_in_days is not None:
        validation.validate_expiration_days(expiration_in_days)
    if registry.tokens.filter(name__iexact=name).exists():
        validation.fail("name", f"a token named '{name}' already exists in registry '{registry.name}'.")
    with transaction.atomic():
        if scope_map:
            chosen = _found(get_scope_map, registry, scope_map, field="scope_map")
            if chosen.tokens.filter(connected_registry__isnull=False).exists():
                validation.fail("scope_map", f"'{chosen.name}' is a sync scope map: it follows its connected "
                                             "registry's repositories and is not for client tokens.")
        else:
            actions = validation.repository_permission_actions(repositories)
            chosen = ScopeMap(registry=registry, name=own_scope_map_name(name), actions=actions,
                              description=f"Scope map of token {name}")
            chosen.full_clean()
            chosen.save()
            record(actor, "scopeMap.create", "scopeMap", chosen.name, registry.name,
                   {"actions": [None, chosen.actions]})
        token = Token(registry=registry, name=name, scope_map=chosen, status=status)
        token.full_clean()
        token.save()
        record(actor, "token.create", "token", token.name, registry.name,
               {"status": [None, token.status], "scopeMap": [None, chosen.name]})
        generated = [generate_password(token, slot, expiration_in_days, actor=actor)
                     for slot in validation.PASSWORD_SLOTS] if passwords else []
    return token, generated


def change_client_tokens(cr: ConnectedRegistry, add=(), remove=(), actor: Actor = SYSTEM) -> ConnectedRegistry:
    """Attach and detach client tokens of cr's registry."""
    current = list(cr.client_tokens.order_by("name"))
    names = {t.name.lower() for t in current}
    adding, removing = [], []
    for name in add or ():
        token = _lookup(cr, name, "add_client_tokens")
        if token.is_sync_token():
            validation.fail("add_client_tokens", f"'{token.name}' is a sync token; attach a client token "
                                                 "(acr token create ...).")
        if token.name.lower() in names or token in adding:
            validation.fail("add_client_tokens", f"'{token.name}' is already a client token of '{cr.name}'.")
        adding.append(token)
    for name in remove or ():
        token = _lookup(cr, name, "remove_client_tokens")
        if token.name.lower() not in names:
            validation.fail("remove_client_tokens", f"'{token.name}' is not a client token of '{cr.name}'.")
        if token in adding:
            validation.fail("remove_client_tokens", f"'{token.name}' is both added and removed.")
        removing.append(token)
    validation.validate_client_token_count(len(current) + len(adding) - len(removing), cr.name,
                                           settings.PORTAL["MAX_CLIENT_TOKENS"])
    before = [t.name for t in current]
    with transaction.atomic():
        cr.client_tokens.add(*adding)
        cr.client_tokens.remove(*removing)
        after = list(cr.client_tokens.order_by("name").values_list("name", flat=True))
        if after != before:
            record(actor, "connectedRegistry.update", "connectedRegistry", cr.name, cr.registry.name,
                   {"clientTokens": [before, after]})
    return cr


def _lookup(cr: ConnectedRegistry, name: str, field: str) -> Token:
    return _found(get_token, cr.registry, name, field=field)


def _found(finder, *args, field: str):
    """finder(*args); a NotFound becomes a rule error on field (the CLI names the flag)."""
    try:
        return finder(*args)
    except NotFound as e:
        validation.fail(field, str(e))


def delete_client_token_leftovers(token: Token, attached: list[ConnectedRegistry], actor: Actor) -> None:
    """After a client token is deleted: the connected registries it served
    record that it left; its own scope map goes when no other token uses it."""
    for cr in attached:
        after = list(cr.client_tokens.order_by("name").values_list("name", flat=True))
        record(actor, "connectedRegistry.update", "connectedRegistry", cr.name, cr.registry.name,
               {"clientTokens": [sorted(after + [token.name]), after]})
    own = ScopeMap.objects.filter(registry_id=token.registry_id, name__iexact=own_scope_map_name(token.name)).first()
    if own is not None and not own.tokens.exists():
        own.delete()
        record(actor, "scopeMap.delete", "scopeMap", own.name, token.registry.name)

