"""What a token may do: scope-map actions x requested scopes -> the access
a JWT grants. Pure functions, no database.

Scope-map actions map onto distribution's as follows:

    repositories/<repo>/content/read    -> repository:<repo>:pull
    repositories/<repo>/content/write   -> repository:<repo>:push
    repositories/<repo>/content/delete  -> repository:<repo>:delete
    repositories/<repo>/metadata/read   -> registry:catalog:*

Distribution has no scope of its own for tag listing: /tags/list needs
`pull`, which also serves content. metadata/read alone therefore does not
grant pull (that would hand out content the scope map does not allow); the
catalog, which distribution cannot filter, lists every repository's name.
metadata/write (tag locking) has no distribution counterpart.

What is asked beyond what is allowed is left out of the token, as token
services do; the registry then answers 401 insufficient_scope.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

PULL, PUSH, DELETE = "pull", "push", "delete"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})
SCOPE_MAP_TO_REGISTRY = {"content/read": PULL, "content/write": PUSH, "content/delete": DELETE}
CATALOG_GRANTING = "metadata/read"


@dataclass(frozen=True)
class Scope:
    """One requested scope, 'repository:app/web:pull,push'."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class Permissions:
    """What a token may do against one service."""

    repositories: dict[str, frozenset[str]] = field(default_factory=dict)
    catalog: bool = False
    # Actions on every repository (a connected registry's own sync token).
    every_repository: frozenset[str] = frozenset()

    def on(self, repository: str) -> frozenset[str]:
        return self.repositories.get(repository, frozenset()) | self.every_repository

    def without(self, actions: Iterable[str]) -> "Permissions":
        drop = frozenset(actions)
        return Permissions({repo: acts - drop for repo, acts in self.repositories.items()}, self.catalog,
                           self.every_repository - drop)


NOTHING = Permissions()
# A connected registry's own sync token against that connected registry:
# syncing writes and deletes tags, and a ReadOnly mirror purges repositories
# it no longer syncs (found through the catalog).
OWNER = Permissions(catalog=True, every_repository=REPOSITORY_ACTIONS)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """The `scope` parameters of a request (each may hold several, space
    separated); malformed ones are dropped."""
    scopes = []
    for value in values:
        for text in (value or "").split():
            parts = text.split(":")
            if len(parts) < 3 or not parts[0] or not parts[-1]:
                continue
            name = ":".join(parts[1:-1])
            actions = tuple(dict.fromkeys(a for a in parts[-1].split(",") if a))
            if name and actions:
                scopes.append(Scope(parts[0], name, actions))
    return scopes


def from_scope_map(actions: Iterable[str]) -> Permissions:
    """The permissions scope-map actions give (see the module docstring)."""
    repositories: dict[str, set[str]] = {}
    catalog = False
    for action in actions:
        parts = action.split("/")
        if parts[0] != "repositories" or len(parts) < 4:
            continue
        repo, what = "/".join(parts[1:-2]), "/".join(parts[-2:])
        if what in SCOPE_MAP_TO_REGISTRY:
            repositories.setdefault(repo, set()).add(SCOPE_MAP_TO_REGISTRY[what])
        elif what == CATALOG_GRANTING:
            catalog = True
    return Permissions({repo: frozenset(acts) for repo, acts in repositories.items()}, catalog)


def decide(requested: Iterable[Scope], permissions: Permissions) -> list[dict]:
    """The JWT's `access`: for each requested resource, the requested actions
    that are allowed (merged per resource, sorted); resources with nothing
    allowed are left out."""
    granted: dict[tuple[str, str], set[str]] = {}
    for scope in requested:
        if scope.type == "repository":
            allowed = permissions.on(scope.name)
            asked = REPOSITORY_ACTIONS if "*" in scope.actions else set(scope.actions)
            actions = asked & allowed
        elif scope.type == "registry" and scope.name == "catalog":
            actions = {"*"} & set(scope.actions) if permissions.catalog else set()
        else:
            actions = set()
        if actions:
            granted.setdefault((scope.type, scope.name), set()).update(actions)
    return [{"type": kind, "name": name, "actions": sorted(actions)} for (kind, name), actions in granted.items()]


def refused(requested: Iterable[Scope], access: list[dict]) -> list[str]:
    """The requested 'type:name:action' triples the access does not grant
    (what the audit trail records as denied)."""
    given = {(a["type"], a["name"], action) for a in access for action in a["actions"]}
    out = []
    for scope in requested:
        asked = sorted(REPOSITORY_ACTIONS) if scope.type == "repository" and "*" in scope.actions \
            else scope.actions
        for action in asked:
            if (scope.type, scope.name, action) not in given:
                out.append(f"{scope.type}:{scope.name}:{action}")
    return list(dict.fromkeys(out))
