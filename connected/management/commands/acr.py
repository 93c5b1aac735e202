"""`python manage.py acr ...`: the `az acr` commands of the seed document.

Thin on purpose: the flags are in connected.cli.arguments, the handlers in
connected.cli.*, the rules in connected.operations / connected.credentials,
the printing in connected.cli_output. User errors become one line on stderr,
`ERROR: --flag: <rule>`, and a non-zero exit; warnings are `WARNING: ...`
lines on stderr.
"""
from __future__ import annotations

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.utils import OperationalError
from kombu.exceptions import OperationalError as BrokerError

from connected import cli_output
from connected.audit import Actor
from connected.cli import arguments, connected_registries, events, registries, tokens
from connected.cli.base import AcrParser, user_error

HANDLERS = {**registries.HANDLERS, **connected_registries.HANDLERS, **tokens.HANDLERS, **events.HANDLERS}


class Command(BaseCommand):
    help = "Manage registries and connected registries, as `az acr` does."
    # call_command(..., stdin=...) lets tests answer confirmation prompts.
    stealth_options = ("stdin",)

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a CommandParser; errors on the top level (an unknown
        # command) must read like those of the subcommands.
        parser.__class__ = AcrParser
        return parser

    def add_arguments(self, parser):
        arguments.add_arguments(parser)

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
        self.stdin = options.pop("stdin", None) or sys.stdin
        self.actor = Actor.cli()
        try:
            HANDLERS[action](self, **options)
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

    # --- output used by the handlers ----------------------------------------
    def emit(self, data, output: str = "json", columns=None, rows=None):
        self.stdout.write(cli_output.table(columns, rows) if output == "table" else cli_output.to_json(data))

    def print_query(self, data: dict, query: str, output: str, what: str, examples: str) -> None:
        """--query: the value at a property path; in table mode a bare value, like az -o tsv."""
        try:
            value = cli_output.query(data, query)
        except KeyError as e:
            raise CommandError(f"--query: '{e.args[0]}' is not a property of {what}; use e.g. {examples}.") \
                from None
        if output == "table" and not isinstance(value, (dict, list)):
            self.stdout.write("-" if value is None else str(value))
        else:
            self.stdout.write(cli_output.to_json(value))
