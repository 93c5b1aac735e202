"""The flags of `python manage.py acr ...`: those of the seed document and of
`az acr`, one subcommand per handler (set_defaults(action=...))."""
from __future__ import annotations

import argparse

from .base import COMMAND_PROGS, AcrParser, parse_bool, positive_count, positive_seconds

CR = "python manage.py acr connected-registry"
EXAMPLES = {
    "create": "python manage.py acr create --name myacrregistry --login-server http://127.0.0.1:5001 "
              "--data-endpoint-enabled",
    "update": "python manage.py acr update --name myacrregistry --data-endpoint-enabled",
    "cr_create": f'{CR} create --registry myacrregistry --name myconnectedregistry '
                 '--repository "hello-world" "acr/connected-registry"',
    "cr_update": f'{CR} update --registry myacrregistry --name myconnectedregistry '
                 '--sync-schedule "0 12 * * *" --sync-window PT4H --add-client-tokens mytoken',
    "cr_repo": f'{CR} repo --registry myacrregistry --name myconnectedregistry --add "new-repo" --remove "old-repo"',
    "cr_show": f"{CR} show --registry myacrregistry --name myconnectedregistry --output table",
    "cr_list": f"{CR} list --registry myacrregistry --output table",
    "cr_get_settings": f"{CR} get-settings --registry myacrregistry --name myconnectedregistry "
                       "--generate-password 1 --yes",
    "cr_activate": f"{CR} activate --registry myacrregistry --name myconnectedregistry "
                   "--login-server http://127.0.0.1:5002",
    "cr_deactivate": f"{CR} deactivate --registry myacrregistry --name myconnectedregistry --yes",
    "cr_delete": f"{CR} delete --registry myacrregistry --name myconnectedregistry --yes",
    "cr_resync": f"{CR} resync --registry myacrregistry --name myconnectedregistry --wait",
    "cr_cancel": f"{CR} cancel --registry myacrregistry --name myconnectedregistry --wait",
    "cr_runs": f"{CR} runs --registry myacrregistry --name myconnectedregistry --output table",
    "cr_messages": f"{CR} messages --registry myacrregistry --name myconnectedregistry --output table",
    "token_show": "python manage.py acr token show --registry myacrregistry --name myconnectedregistry-sync-token "
                  "--query scopeMapId",
    "token_create": "python manage.py acr token create --registry myacrregistry --name mytoken "
                    "--repository hello-world content/read metadata/read",
    "token_service_export": "python manage.py acr token-service export --registry myacrregistry "
                            "--connected-registry myconnectedregistry --output-dir ./registry-auth",
    "events_secret_generate": "python manage.py acr events-secret generate --registry myacrregistry",
    "token_update": "python manage.py acr token update --registry myacrregistry "
                    "--name myconnectedregistry-sync-token --status disabled",
    "token_credential_generate": "python manage.py acr token credential generate --registry myacrregistry "
                                 "--name myconnectedregistry-sync-token --password2 --expiration-in-days 30",
}


def add_arguments(parser) -> None:
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=AcrParser)

    def group(subparsers, name, help_text):
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        return sub.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True, parser_class=AcrParser)

    def command(subparsers, name, help_text, action, registry_flag=False, name_help=None):
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    epilog=f"example:\n  {EXAMPLES[action]}" if action in EXAMPLES else None,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(action=action)
        COMMAND_PROGS[action] = sub.prog
        if registry_flag:
            sub.add_argument("--registry", "-r", required=True, help="Name of the registry.")
        if name_help:
            sub.add_argument("--name", "-n", required=True, help=name_help)
        return sub

    def output_flag(sub):
        sub.add_argument("--output", "-o", choices=("json", "table"), default="json",
                         help="Output format (default: json).")

    def yes_flag(sub):
        sub.add_argument("--yes", "-y", action="store_true", help="Do not prompt for confirmation.")

    # --- registries -------------------------------------------------------------
    create = command(commands, "create", "Create a registry (the top-level parent).", "create",
                     name_help="Name of the registry.")
    create.add_argument("--login-server", required=True, metavar="URL",
                        help="URL of its OCI endpoint, e.g. http://127.0.0.1:5001; it must answer.")
    create.add_argument("--data-endpoint-enabled", nargs="?", const=True, default=False, type=parse_bool,
                        metavar="true|false", help="Enable the data endpoint (bare flag means true).")
    update = command(commands, "update", "Update a registry.", "update", name_help="Name of the registry.")
    update.add_argument("--data-endpoint-enabled", nargs="?", const=True, default=None, type=parse_bool,
                        metavar="true|false", help="Enable or disable the data endpoint (bare flag: true).")
    output_flag(command(commands, "show", "Show a registry.", "show", name_help="Name of the registry."))
    output_flag(command(commands, "list", "List the registries.", "list"))

    # --- connected registries -------------------------------------------------------
    crs = group(commands, "connected-registry", "Manage connected registries.")
    cr_name = "Name of the connected registry."

    def cr_command(name, help_text, with_name=True):
        return command(crs, name, help_text, "cr_" + name.replace("-", "_"), registry_flag=True,
                       name_help=cr_name if with_name else None)

    cr_create = cr_command("create", "Create a connected registry, its sync token and its scope map.")
    cr_create.add_argument("--repository", nargs="+", action="extend", dest="repositories", default=[],
                           metavar="REPO", help="Repositories to sync (one or more).")
    cr_create.add_argument("--mode", "-m", default="ReadOnly", metavar="ReadOnly|ReadWrite",
                           help="ReadOnly (default) or ReadWrite; fixed after creation.")
    cr_create.add_argument("--parent", "-p", metavar="PARENT",
                           help="Name of the parent connected registry (default: the registry itself).")
    cr_create.add_argument("--login-server", metavar="URL", help="URL of the deployed instance, if any.")
    sync_flags(cr_create)

    cr_update = cr_command("update", "Update the sync properties or logging of a connected registry.")
    sync_flags(cr_update, creating=False)
    # Fixed after creation: accepted only so the rule, not argparse, answers.
    cr_update.add_argument("--mode", "-m", help=argparse.SUPPRESS)
    cr_update.add_argument("--parent", "-p", help=argparse.SUPPRESS)
    cr_update.add_argument("--add-client-tokens", nargs="+", action="extend", default=[], metavar="TOKEN",
                           help="Client tokens local clients may use against this connected registry "
                                "(at most 50).")
    cr_update.add_argument("--remove-client-tokens", nargs="+", action="extend", default=[], metavar="TOKEN",
                           help="Client tokens to detach.")

    cr_repo = cr_command("repo", "Add or remove repositories; the sync scope maps follow.")
    cr_repo.add_argument("--add", nargs="+", action="extend", default=[], metavar="REPO",
                         help="Repositories to start syncing (ancestors gain them too).")
    cr_repo.add_argument("--remove", nargs="+", action="extend", default=[], metavar="REPO",
                         help="Repositories to stop syncing.")

    cr_show = cr_command("show", "Show a connected registry.")
    output_flag(cr_show)
    cr_show.add_argument("--query", help="A property to print, e.g. lastSync, connectionState, "
                                         "parent.syncProperties.schedule.")

    cr_list = cr_command("list", "List connected registries in tree order.", with_name=False)
    cr_list.add_argument("--parent", "-p", help="List the descendants of this connected registry.")
    cr_list.add_argument("--no-children", action="store_true",
                         help="Only the direct children (of --parent, or of the registry).")
    output_flag(cr_list)

    settings = cr_command("get-settings", "Print the connection string a deployed instance needs.")
    settings.add_argument("--parent-protocol", metavar="https|http",
                          help="Protocol towards the parent (default https; http only for a connected-registry "
                               "parent).")
    settings.add_argument("--generate-password", metavar="1|2",
                          help="Generate a new password for this slot of the sync token (the other keeps "
                               "working); it is shown once.")
    settings.add_argument("--registry-config", metavar="DIR",
                          help="Also write a complete distribution config (storage, token auth toward the "
                               "portal, notifications) and the token certificate bundle into DIR: then "
                               "`docker-registry serve DIR/config.yml` starts the connected registry.")
    settings.add_argument("--storage-dir", metavar="PATH", help="With --registry-config: storage root "
                                                                "(default DIR/storage).")
    settings.add_argument("--http-addr", metavar="[HOST]:PORT", help="With --registry-config: listen address "
                                                                      "(default: the login server's port, or :5000).")
    settings.add_argument("--portal-url", metavar="URL", help="The portal as the registry reaches it "
                                                               "(default PORTAL_URL).")
    yes_flag(settings)

    activate = cr_command("activate", "Bind a deployed instance (it must answer as a registry).")
    activate.add_argument("--login-server", required=True, metavar="URL", help="URL of the deployed instance.")
    yes_flag(cr_command("deactivate", "Deactivate: unbind the deployed instance so another can activate."))
    yes_flag(cr_command("delete", "Delete a connected registry with its sync token and scope map."))

    cr_resync = cr_command("resync", "Start a sync of a connected registry now.")
    cr_resync.add_argument("--wait", action="store_true", help="Wait for the run to end and print its outcome.")
    cr_resync.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                           help="With --wait: stop waiting after this long (implies --wait).")

    cr_cancel = cr_command("cancel", "Cancel the queued or running sync of a connected registry.")
    cr_cancel.add_argument("--wait", action="store_true", help="Wait until the run has stopped.")

    cr_runs = cr_command("runs", "List recent sync runs with their progress, or one run with its per-tag ledger.")
    cr_runs.add_argument("--run", type=positive_count, metavar="ID", help="Show this run and its ledger.")
    cr_runs.add_argument("--top", type=positive_count, default=10, metavar="N", help="How many recent runs (default 10).")
    output_flag(cr_runs)

    cr_messages = cr_command("messages", "List the sync messages waiting for a connected registry (pending), "
                                         "or with --all the recent ones of every status.")
    cr_messages.add_argument("--all", action="store_true", dest="all_messages",
                             help="The last 200 messages, pending, applied or expired (oldest first, as "
                                  "without it).")
    output_flag(cr_messages)

    # --- tokens and scope maps -----------------------------------------------------------
    tokens = group(commands, "token", "Manage tokens (client tokens, and sync tokens of connected registries).")
    token_name = "Name of the token."
    token_create = command(tokens, "create", "Create a client token; its passwords are shown once.",
                           "token_create", True, token_name)
    token_create.add_argument("--repository", nargs="+", action="append", dest="repositories", default=[],
                              metavar=("REPO", "ACTION"),
                              help="A repository and its actions (content/read, content/write, content/delete, "
                                   "metadata/read, metadata/write); repeat per repository. Makes the scope map "
                                   "<name>-scope-map.")
    token_create.add_argument("--scope-map", metavar="NAME", help="Use an existing scope map instead.")
    token_create.add_argument("--status", default="enabled", metavar="enabled|disabled", help="Default enabled.")
    token_create.add_argument("--no-passwords", action="store_true", help="Generate no password now.")
    token_create.add_argument("--expiration-in-days", metavar="DAYS", help="Days until the passwords expire.")
    token_show = command(tokens, "show", "Show a token (never its passwords).", "token_show", True, token_name)
    token_show.add_argument("--query", help="A property to print, e.g. scopeMapId, status.")
    output_flag(command(tokens, "list", "List the tokens of a registry.", "token_list", True))
    token_update = command(tokens, "update", "Enable or disable a token.", "token_update", True, token_name)
    token_update.add_argument("--status", required=True, metavar="enabled|disabled",
                              help="disabled stops the syncs of its connected registry.")
    yes_flag(command(tokens, "delete", "Delete a token (not a sync token while its connected registry exists).",
                     "token_delete", True, token_name))
    credential = group(tokens, "credential", "Manage token passwords.")
    generate = command(credential, "generate", "Generate a password of a token; it is shown once.",
                       "token_credential_generate", True, token_name)
    slot = generate.add_mutually_exclusive_group(required=True)
    slot.add_argument("--password1", dest="slot", action="store_const", const=1, help="Generate password1.")
    slot.add_argument("--password2", dest="slot", action="store_const", const=2, help="Generate password2.")
    generate.add_argument("--expiration-in-days", metavar="DAYS", help="Days until the password expires.")
    yes_flag(generate)  # asked only when the slot already holds a password

    service = group(commands, "token-service", "The portal as token service of the registries.")
    export = command(service, "export", "Write the token certificate bundle and a ready `auth: token` block "
                                        "for a registry's config.", "token_service_export")
    export.add_argument("--registry", "-r", help="The registry (its service); without it only the bundle.")
    export.add_argument("--connected-registry", metavar="NAME",
                        help="A connected registry of --registry (its own service).")
    export.add_argument("--output-dir", required=True, metavar="DIR", help="Where to write the files.")
    export.add_argument("--portal-url", metavar="URL", help="The portal as registries reach it (default PORTAL_URL).")

    events = group(commands, "events-secret", "The secret a registry sends its webhook events to the portal with.")
    generate_secret = command(events, "generate", "Generate the events secret of a registry or connected registry "
                                                  "(shown once) and print its notifications block.",
                              "events_secret_generate", True)
    generate_secret.add_argument("--connected-registry", metavar="NAME",
                                 help="A connected registry of --registry (its own events).")
    generate_secret.add_argument("--portal-url", metavar="URL",
                                 help="The portal as registries reach it (default PORTAL_URL).")
    yes_flag(generate_secret)

    scope_maps = group(commands, "scope-map", "Show scope maps.")
    output_flag(command(scope_maps, "show", "Show a scope map and its actions.", "scope_map_show", True,
                        "Name of the scope map."))
    output_flag(command(scope_maps, "list", "List the scope maps of a registry.", "scope_map_list", True))


def sync_flags(sub, creating: bool = True) -> None:
    """The sync flags; on update, a flag left out keeps the current value (no defaults to show)."""
    def default(text: str) -> str:
        return f" ({text})" if creating else ""

    sub.add_argument("--sync-schedule", "-s", metavar="CRON",
                     help='Cron expression in UTC; "* * * * *" is continuous' + default("the default") + ".")
    sub.add_argument("--sync-window", "-w", metavar="DURATION",
                     help="ISO 8601 duration, PT1H to P7D" + default("default PT1H for a non-continuous schedule")
                     + ".")
    sub.add_argument("--sync-message-ttl", dest="message_ttl", metavar="DURATION",
                     help="ISO 8601 duration, P1D to P90D" + default("default P2D") + ".")
    sub.add_argument("--log-level", metavar="LEVEL",
                     help="Debug, Information" + default("the default") + ", Warning, Error or None.")
