"""What every `acr` handler shares: flag names for model fields, one-line
errors, lookups that name the flag, confirmation prompts."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from connected import credentials, operations

# Model field (the key of a ValidationError) -> the flag a user typed, in the
# order an error naming several fields is reported.
FIELD_FLAGS = {
    "registry": "--registry", "name": "--name", "login_server": "--login-server",
    "repositories": "--repository", "add": "--add", "remove": "--remove", "mode": "--mode", "parent": "--parent",
    "sync_schedule": "--sync-schedule", "sync_window": "--sync-window",
    "message_ttl": "--sync-message-ttl", "log_level": "--log-level", "status": "--status",
    "parent_protocol": "--parent-protocol", "generate_password": "--generate-password",
    "password": "--password1/--password2", "expiration_in_days": "--expiration-in-days",
    "repository": "--repository", "scope_map": "--scope-map",
    "add_client_tokens": "--add-client-tokens", "remove_client_tokens": "--remove-client-tokens",
    "portal_url": "--portal-url", "http_addr": "--http-addr", "connected_registry": "--connected-registry",
    # queue_sync's reasons concern the connected registry named by --name.
    "sync": "--name",
}


# action -> the prog of its subcommand ("manage.py acr connected-registry show"),
# filled in as the subcommands are built.
COMMAND_PROGS: dict[str, str] = {}


class AcrParser(CommandParser):
    """Argparse errors as one `ERROR:` line that names the flag, exit code 2."""

    def parse_args(self, args=None, namespace=None):
        # argparse reports unknown flags from the top parser; point at the
        # help of the subcommand they were given to instead.
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}",
                       prog=COMMAND_PROGS.get(getattr(parsed, "action", None)))
        return parsed

    def error(self, message, prog: str | None = None):
        # argparse says "argument --mode/-m: ..."; the house style is "--mode: ...".
        text = re.sub(r"^argument (\S+?)(/\S+)?: ", r"\1: ", message)
        text = f"{text} (see: {prog or self.prog} --help)"
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


def positive_count(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return int(text)


def user_error(error: ValidationError) -> CommandError:
    """One line for a ValidationError: the first field in flag order, and its
    last message, which is the product's rule (the model's clean() runs after
    Django's generic field checks such as "Value 'x' is not a valid choice.")."""
    messages = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
    field = next((f for f in FIELD_FLAGS if f in messages), next(iter(messages)))
    flag = FIELD_FLAGS.get(field)
    return CommandError(f"{flag}: {messages[field][-1]}" if flag else messages[field][-1])


def lookup(finder, *args, flag: str):
    """finder(*args), a NotFound turned into `flag: ... not found.`; an
    empty name is told as such."""
    name = args[-1]
    if isinstance(name, str) and not name.strip():
        raise CommandError(f"{flag}: must not be empty: give a name.")
    try:
        return finder(*args)
    except operations.NotFound as e:
        raise CommandError(f"{flag}: {e}") from None


def refuse_empty(keep: str, **values) -> None:
    """A flag given an empty value (or an empty name in a list) is an error
    naming it: '' never quietly means the default or nothing. keep: what
    leaving the flag out gives ("the default", "the current value")."""
    for field, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, str) and not v.strip() for v in items):
            flag = FIELD_FLAGS.get(field, "--" + field.replace("_", "-"))
            raise CommandError(f"{flag}: must not be empty (leave the flag out for {keep}).")


def optional_connected_registry(reg, name: str | None, flag: str):
    """The connected registry an optional flag names, None when the flag is
    left out; an empty value is an error (it must not mean "the registry")."""
    if name is None:
        return None
    if not name.strip():  # said more precisely than lookup's "must not be empty"
        raise CommandError(f"{flag}: must name a connected registry; leave the flag out to mean the registry "
                           "itself.")
    return lookup(operations.get_connected_registry, reg, name, flag=flag)


def checked(validate, value, field: str):
    """validate(value, field) when a value was given (None stays None), its
    ValidationError as the one-line error naming the flag."""
    if value is None:
        return None
    try:
        return validate(value, field)
    except ValidationError as e:
        raise user_error(e) from None


def writable_dir(path: str, flag: str) -> None:
    """Make the directory (and its parents) if need be; CommandError naming the
    flag when it cannot be written, before anything else changes."""
    target = Path(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"{flag}: cannot create '{path}' ({e.strerror}).") from None
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        raise CommandError(f"{flag}: '{path}' is not a directory this user can write to.")


def registry(name: str, flag: str = "--registry"):
    return lookup(operations.get_registry, name, flag=flag)


def connected_registry(registry_name: str, name: str, flag: str = "--name"):
    return lookup(operations.get_connected_registry, registry(registry_name), name, flag=flag)


def token(registry_name: str, name: str):
    return lookup(credentials.get_token, registry(registry_name), name, flag="--name")


def confirm(cmd, question: str, yes: bool) -> None:
    """Go on only after a yes: --yes, or an answer on a terminal. Without a
    terminal (scripts, pipes) the command refuses and says to add --yes."""
    if yes:
        return
    stdin = cmd.stdin
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        raise CommandError(f"--yes: {question} Confirmation is needed and stdin is not a terminal: "
                           "add --yes to go ahead.")
    cmd.stderr.write(f"{question} Continue? (y/N): ", ending="")
    cmd.stderr.flush()
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise CommandError("cancelled: nothing was changed.")


def confirm_replacing_password(cmd, token, slot: int, yes: bool) -> None:
    """Ask (or need --yes) before a new password replaces one that exists:
    whoever holds it (for a sync token, the deployed instance) is cut off.
    An empty slot is filled without asking."""
    if token is not None and token.has_password(slot):
        confirm(cmd, f"A new password{slot} of '{token.name}' replaces the current one, which stops "
                     "working (the other password keeps working).", yes)


def warn(cmd, warnings) -> None:
    for text in warnings or []:
        cmd.stderr.write(f"WARNING: {text}")
