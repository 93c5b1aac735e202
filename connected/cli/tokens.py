"""`acr token ...` and `acr scope-map ...`. Passwords are printed only by
`token credential generate` (and get-settings), once."""
from __future__ import annotations

from django.core.management.base import CommandError

from connected import cli_output, client_tokens, credentials, validation
from connected.tokenservice import registry_config

from . import base


def create(cmd, registry, name, repositories, scope_map, status, no_passwords, expiration_in_days, **_):
    token, passwords = client_tokens.create_client_token(
        base.registry(registry), name, repositories, scope_map, status, passwords=not no_passwords,
        expiration_in_days=expiration_in_days, actor=cmd.actor)
    data = cli_output.token_to_dict(token)
    data["credentials"]["passwords"] = [cli_output.generated_password_to_dict(token, p)["passwords"][0]
                                        for p in passwords]
    cmd.emit(data)
    if passwords:
        base.warn(cmd, ["the passwords are shown this once; store them safely, they cannot be retrieved again."])


def service_export(cmd, registry, connected_registry, output_dir, portal_url, **_):
    service = None
    if connected_registry is not None and not registry:
        raise CommandError("--connected-registry: give its --registry too.")
    portal_url = base.checked(validation.validate_portal_url, portal_url, "portal_url")
    if registry:
        reg = base.registry(registry)
        cr = base.optional_connected_registry(reg, connected_registry, "--connected-registry")
        service = registry_config.service_of(reg, cr)
    base.writable_dir(output_dir, "--output-dir")
    result = registry_config.export(output_dir, service, portal_url)
    cmd.emit(result)


def show(cmd, registry, name, query, **_):
    data = cli_output.token_to_dict(base.token(registry, name))
    if query:
        cmd.print_query(data, query, "json", "a token", "scopeMapId, status or credentials")
        return
    cmd.emit(data)


def list_(cmd, registry, output, **_):
    tokens = list(base.registry(registry).tokens.select_related("scope_map", "registry"))
    cmd.emit([cli_output.token_to_dict(t) for t in tokens], output, cli_output.TOKEN_COLUMNS,
             [cli_output.token_row(t) for t in tokens])


def update(cmd, registry, name, status, **_):
    token = credentials.update_token_status(base.token(registry, name), status, actor=cmd.actor)
    cmd.emit(cli_output.token_to_dict(token))


def delete(cmd, registry, name, yes, **_):
    token = base.token(registry, name)
    blocker = token.deletion_blocker()
    if blocker:  # say so before asking
        raise CommandError(f"--name: {blocker}")
    base.confirm(cmd, f"Deleting token '{token.name}' makes its passwords stop working.", yes)
    credentials.delete_token(token, actor=cmd.actor)
    cmd.stdout.write(f"deleted token '{token.name}'")


def credential_generate(cmd, registry, name, slot, expiration_in_days, yes=False, **_):
    token = base.token(registry, name)
    # Checked before asking, so a bad value is told at once and changes nothing.
    if expiration_in_days is not None:
        base.checked(validation.validate_expiration_days, expiration_in_days, "expiration_in_days")
    base.confirm_replacing_password(cmd, token, slot, yes)
    password = credentials.generate_password(token, slot, expiration_in_days, actor=cmd.actor)
    cmd.emit(cli_output.generated_password_to_dict(token, password))
    base.warn(cmd, ["the password is shown this once; store it safely, it cannot be retrieved again."])


def scope_map_show(cmd, registry, name, output, **_):
    scope_map = base.lookup(credentials.get_scope_map, base.registry(registry), name, flag="--name")
    cmd.emit(cli_output.scope_map_to_dict(scope_map), output, ("ACTIONS",),
             [[action] for action in scope_map.actions])


def scope_map_list(cmd, registry, output, **_):
    scope_maps = list(base.registry(registry).scope_maps.select_related("registry"))
    cmd.emit([cli_output.scope_map_to_dict(s) for s in scope_maps], output, ("NAME", "REPOSITORIES", "DESCRIPTION"),
             [[s.name, str(len(s.repositories())), s.description] for s in scope_maps])


HANDLERS = {"token_create": create, "token_service_export": service_export, "token_show": show, "token_list": list_, "token_update": update, "token_delete": delete,
            "token_credential_generate": credential_generate, "scope_map_show": scope_map_show,
            "scope_map_list": scope_map_list}
