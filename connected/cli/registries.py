"""`acr create|update|show|list`: the top-level registries."""
from __future__ import annotations

from django.core.management.base import CommandError

from connected import cli_output, operations
from connected.models import Registry

from . import base


def create(cmd, name, login_server, data_endpoint_enabled, **_):
    registry = operations.create_registry(name, login_server, data_endpoint_enabled=data_endpoint_enabled,
                                          actor=cmd.actor)
    cmd.emit(cli_output.registry_to_dict(registry))


def update(cmd, name, data_endpoint_enabled, **_):
    registry = base.registry(name, "--name")
    if data_endpoint_enabled is None:
        raise CommandError("nothing to change: give --data-endpoint-enabled true|false (nothing else can be "
                           "updated yet).")
    registry = operations.update_registry(registry, data_endpoint_enabled=data_endpoint_enabled, actor=cmd.actor)
    cmd.emit(cli_output.registry_to_dict(registry))


def show(cmd, name, output, **_):
    registry = base.registry(name, "--name")
    cmd.emit(cli_output.registry_to_dict(registry), output, cli_output.REGISTRY_COLUMNS,
             [cli_output.registry_row(registry)])


def list_(cmd, output, **_):
    registries = list(Registry.objects.all())
    cmd.emit([cli_output.registry_to_dict(r) for r in registries], output, cli_output.REGISTRY_COLUMNS,
             [cli_output.registry_row(r) for r in registries])


HANDLERS = {"create": create, "update": update, "show": show, "list": list_}
