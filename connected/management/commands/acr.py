"""`python manage.py acr ...`: the `az acr` commands of the seed document.

Thin on purpose: parse the flags, call connected.operations (which holds the
rules), print with connected.cli_output. User errors become one line on
stderr, `ERROR: --flag: <rule>`, and a non-zero exit.
"""
from __future__ import annotations

import argparse
import re
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.utils import OperationalError
from kombu.exceptions import OperationalError as BrokerError

from connected import cli_output, operations, validation
from connected.models import SyncRun

# Model field (the key of a ValidationError) -> the flag a user typed.
FIELD_FLAGS = {
    "registry": "--registry", "name": "--name", "login_server": "--login-server",
    "repositories": "--repository", "mode": "--mode", "parent": "--parent",
    "sync_schedule": "--sync-schedule", "sync_window": "--sync-window",
    "message_ttl": "--sync-message-ttl", "log_level": "--log-level",
    # queue_sync's reasons concern the connected registry named by --name.
    "sync": "--name",
}
EXAMPLES = {
    "create": "python manage.py acr create --name myacrregistry --login-server http://127.0.0.1:5001 "
              "--data-endpoint-enabled",
    "update": "python manage.py acr update --name myacrregistry --data-endpoint-enabled",
    "cr_create": 'python manage.py acr connected-registry create --registry myacrregistry '
                 '--name myconnectedregistry --repository "hello-world" "acr/connected-registry"',
    "cr_show": "python manage.py acr connected-registry show --registry myacrregistry "
               "--name myconnectedregistry --output table",
    "cr_list": "python manage.py acr connected-registry list --registry myacrregistry --output table",
    "cr_resync": "python manage.py acr connected-registry resync --registry myacrregistry "
                 "--name myconnectedregistry --wait",
}


class AcrParser(CommandParser):
    """Argparse errors as one `ERROR:` line that names the flag, exit code 2."""

    def error(self, message):
        # argparse says "argument --mode/-m: ..."; the house style is "--mode: ...".
        text = re.sub(r"^argument (\S+?)(/\S+)?: ", r"\1: ", message)
        text = f"{text} (see: {self.prog} --help)"
        if self.called_from_command_line:
            self.exit(2, f"ERROR: {text}\n")
        raise CommandError(text, returncode=2)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' is not true or false")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def user_error(error: ValidationError) -> CommandError:
    """One line for a ValidationError: the first field in flag order, and its
    last message, which is the product's rule (the model's clean() runs after
    Django's generic field checks such as "Value 'x' is not a valid choice.")."""
    messages = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
    field = next((f for f in FIELD_FLAGS if f in messages), next(iter(messages)))
    flag = FIELD_FLAGS.get(field)
    return CommandError(f"{flag}: {messages[field][-1]}" if flag else messages[field][-1])


class Command(BaseCommand):
    help = "Manage registries and connected registries, as `az acr` does."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a CommandParser; errors on the top level (an unknown
        # command) must read like those of the subcommands.
        parser.__class__ = AcrParser
        return parser

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                         parser_class=AcrParser)

        def command(group, name, help_text, action):
            """A subcommand that runs self.do_<action>."""
            sub = group.add_parser(name, help=help_text, description=help_text,
                                   epilog=f"example:\n  {EXAMPLES[action]}" if action in EXAMPLES else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
            sub.set_defaults(action=action)
            return sub

        def output_flag(sub):
            sub.add_argument("--output", "-o", choices=("json", "table"), default="json",
                             help="Output format (default: json).")

        create = command(commands, "create", "Create a registry (the top-level parent).", "create")
        create.add_argument("--name", "-n", required=True, help="Name of the registry.")
        create.add_argument("--login-server", required=True, metavar="URL",
                            help="URL of its OCI endpoint, e.g. http://127.0.0.1:5001; it must answer.")
        create.add_argument("--data-endpoint-enabled", nargs="?", const=True, default=False, type=parse_bool,
                            metavar="true|false", help="Enable the data endpoint (bare flag means true).")

        update = command(commands, "update", "Update a registry.", "update")
        update.add_argument("--name", "-n", required=True, help="Name of the registry.")
        update.add_argument("--data-endpoint-enabled", nargs="?", const=True, default=None, type=parse_bool,
                            metavar="true|false", help="Enable or disable the data endpoint (bare flag: true).")

        show = command(commands, "show", "Show a registry.", "show")
        show.add_argument("--name", "-n", required=True, help="Name of the registry.")
        output_flag(show)
        output_flag(command(commands, "list", "List the registries.", "list"))

        group = commands.add_parser("connected-registry", help="Manage connected registries.",
                                    description="Manage connected registries.")
        cr_commands = group.add_subparsers(dest="cr_command", metavar="COMMAND", required=True,
                                           parser_class=AcrParser)

        def cr_command(name, help_text):
            sub = command(cr_commands, name, help_text, f"cr_{name}")
            sub.add_argument("--registry", "-r", required=True, help="Name of the registry.")
            return sub

        cr_create = cr_command("create", "Create a connected registry.")
        cr_create.add_argument("--name", "-n", required=True, help="Name of the connected registry.")
        cr_create.add_argument("--repository", nargs="+", action="extend", dest="repositories", default=[],
                               metavar="REPO", help="Repositories to sync (one or more).")
        cr_create.add_argument("--mode", "-m", default="ReadOnly", metavar="ReadOnly|ReadWrite", help="ReadOnly (default) or ReadWrite.")
        cr_create.add_argument("--parent", "-p", metavar="PARENT", help="Name of the parent connected registry (default: "
                                                      "the registry itself).")
        cr_create.add_argument("--login-server", default="", metavar="URL", help="URL of the deployed instance, if any.")
        cr_create.add_argument("--sync-schedule", "-s", metavar="CRON", help='Cron expression in UTC (default "* * * * *": '
                                                             "continuous).")
        cr_create.add_argument("--sync-window", "-w", metavar="DURATION", help="ISO 8601 duration, PT1H to P7D.")
        cr_create.add_argument("--sync-message-ttl", dest="message_ttl", metavar="DURATION", help="ISO 8601 duration, P1D to P90D.")
        cr_create.add_argument("--log-level", metavar="LEVEL", help="Debug, Information (default), Warning, Error or None.")

        cr_show = cr_command("show", "Show a connected registry.")
        cr_show.add_argument("--name", "-n", required=True, help="Name of the connected registry.")
        output_flag(cr_show)
        cr_show.add_argument("--query", help="A property to print, e.g. lastSync, connectionState, "
                                             "parent.syncProperties.schedule.")

        cr_list = cr_command("list", "List connected registries in tree order.")
        cr_list.add_argument("--parent", "-p", help="List the descendants of this connected registry.")
        cr_list.add_argument("--no-children", action="store_true",
                             help="Only the direct children (of --parent, or of the registry).")
        output_flag(cr_list)

        cr_resync = cr_command("resync", "Start a sync of a connected registry now.")
        cr_resync.add_argument("--name", "-n", required=True, help="Name of the connected registry.")
        cr_resync.add_argument("--wait", action="store_true",
                               help="Wait for the run to end and print its outcome.")
        cr_resync.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                               help="With --wait: stop waiting after this long (implies --wait).")

    # --- entry points ---------------------------------------------------
    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except CommandError as e:
            if not getattr(self, "_called_from_command_line", False) or options.get("traceback"):
                raise
            self.stderr.write(f"ERROR: {e}")
            sys.exit(e.returncode)

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"do_{action}")(**options)
        except ValidationError as e:
            raise user_error(e) from None
        except BrokerError as e:
            # Raised by the hand-over to Celery, after the run row was committed.
            raise CommandError(f"the task broker is unreachable ({e}); no worker will get this run. "
                               "Check REDIS_URL or start the broker.") from None
        except OperationalError as e:
            if "no such table" in str(e):
                raise CommandError("the database is not set up: run python manage.py migrate") from None
            raise

    def emit(self, data, output: str = "json", columns=None, rows=None):
        self.stdout.write(cli_output.table(columns, rows) if output == "table" else cli_output.to_json(data))

    # --- lookups that name the flag -------------------------------------
    def registry(self, name: str, flag: str = "--registry"):
        try:
            return operations.get_registry(name)
        except operations.NotFound as e:
            raise CommandError(f"{flag}: {e}") from None

    def connected_registry(self, registry, name: str, flag: str = "--name"):
        try:
            return operations.get_connected_registry(registry, name)
        except operations.NotFound as e:
            raise CommandError(f"{flag}: {e}") from None

    # --- registries -----------------------------------------------------
    def do_create(self, name, login_server, data_endpoint_enabled, **_):
        registry = operations.create_registry(name, login_server, data_endpoint_enabled=data_endpoint_enabled)
        self.emit(cli_output.registry_to_dict(registry))

    def do_update(self, name, data_endpoint_enabled, **_):
        registry = self.registry(name, "--name")
        if data_endpoint_enabled is None:
            raise CommandError("--data-endpoint-enabled: say what to change (nothing else can be updated yet).")
        registry = operations.update_registry(registry, data_endpoint_enabled=data_endpoint_enabled)
        self.emit(cli_output.registry_to_dict(registry))

    def do_show(self, name, output, **_):
        registry = self.registry(name, "--name")
        self.emit(cli_output.registry_to_dict(registry), output, cli_output.REGISTRY_COLUMNS,
                  [cli_output.registry_row(registry)])

    def do_list(self, output, **_):
        from connected.models import Registry

        registries = list(Registry.objects.all())
        self.emit([cli_output.registry_to_dict(r) for r in registries], output, cli_output.REGISTRY_COLUMNS,
                  [cli_output.registry_row(r) for r in registries])

    # --- connected registries -------------------------------------------
    def do_cr_create(self, registry, name, repositories, mode, parent, login_server, sync_schedule,
                     sync_window, message_ttl, log_level, **_):
        reg = self.registry(registry)
        parent_cr = self.connected_registry(reg, parent, "--parent") if parent else None
        # The rule accepts any case, but the model's choices check (run first by
        # full_clean) only knows the canonical spelling: hand it that.
        mode = validation.validate_mode(mode)
        cr = operations.create_connected_registry(
            reg, name, repositories, mode=mode, parent=parent_cr, login_server=login_server,
            sync_schedule=sync_schedule, sync_window=sync_window, message_ttl=message_ttl, log_level=log_level)
        self.emit(cli_output.connected_registry_to_dict(cr))

    def do_cr_show(self, registry, name, output, query, **_):
        cr = self.connected_registry(self.registry(registry), name)
        data = cli_output.connected_registry_to_dict(cr)
        if query:
            try:
                value = cli_output.query(data, query)
            except KeyError as e:
                raise CommandError(f"--query: '{e.args[0]}' is not a property of a connected registry; use "
                                   "e.g. lastSync, connectionState or parent.syncProperties.schedule.") from None
            if output == "table" and not isinstance(value, (dict, list)):
                self.stdout.write("" if value is None else str(value))  # a bare value, like az -o tsv
            else:
                self.stdout.write(cli_output.to_json(value))
            return
        self.emit(data, output, cli_output.SHOW_COLUMNS, [cli_output.connected_registry_row(cr)])

    def do_cr_list(self, registry, parent, no_children, output, **_):
        reg = self.registry(registry)
        root = self.connected_registry(reg, parent, "--parent") if parent else None
        crs = reg.connected_registries.select_related("registry", "parent")
        rows = cli_output.tree_order(crs, root, children=not no_children)
        self.emit([cli_output.connected_registry_to_dict(cr) for cr, _ in rows], output, cli_output.LIST_COLUMNS,
                  [cli_output.connected_registry_row(cr, depth, with_schedule=False) for cr, depth in rows])

    def do_cr_resync(self, registry, name, wait, timeout, **_):
        cr = self.connected_registry(self.registry(registry), name)
        run = operations.queue_sync(cr, SyncRun.Trigger.MANUAL)
        self.stdout.write(f"sync run {run.pk} queued for '{cr.name}'")
        if not (wait or timeout):
            return
        try:
            run = operations.wait_for_run(run, timeout=timeout)
        except KeyboardInterrupt:
            raise CommandError(f"stopped waiting; run {run.pk} goes on in the background.", returncode=130) \
                from None
        self.stdout.write(cli_output.run_outcome(run))
        if not run.is_finished():
            raise CommandError(f"--timeout: run {run.pk} did not end within {timeout:g} seconds "
                               f"(still {run.status}).")
        if run.status != SyncRun.Status.SUCCEEDED:
            raise CommandError(f"run {run.pk} ended {run.get_status_display()}"
                               + (f": {run.error}" if run.error else "."))
