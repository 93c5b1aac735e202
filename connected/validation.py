"""The rules of the product, in one place.

Every entry point (CLI, forms, admin, API) validates through these functions.
Each raises django.core.exceptions.ValidationError keyed by the field it
concerns, so callers can name the field (a form field, a CLI flag) and the
rule. Nothing here touches the database or HTTP.
"""
from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import isodate
from croniter import croniter
from django.core.exceptions import ValidationError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{4,49}$")
# OCI distribution name grammar: path components joined by "/".
REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{REPO_COMPONENT}(?:/{REPO_COMPONENT})*$")
REPO_MAX_LENGTH = 255
# OCI distribution tag and digest grammars (distribution spec, "Pulling manifests").
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$")
DIGEST_MAX_LENGTH = 150  # sha512 digests are 135 characters
MAX_REPOSITORIES_PER_SCOPE_MAP = 500

MODES = ("ReadOnly", "ReadWrite")
LOG_LEVELS = ("Debug", "Information", "Warning", "Error", "None")

CONTINUOUS_SCHEDULE = "* * * * *"
DEFAULT_SYNC_WINDOW = "PT1H"
DEFAULT_MESSAGE_TTL = "P2D"
SYNC_WINDOW_BOUNDS = (dt.timedelta(hours=1), dt.timedelta(days=7))
MESSAGE_TTL_BOUNDS = (dt.timedelta(days=1), dt.timedelta(days=90))

# Cron fields and their ranges, for messages that name the field at fault.
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
               ("month", 1, 12), ("day of week", 0, 7))


def fail(field: str, message: str):
    raise ValidationError({field: [message]})


def validate_name(name: str, field: str = "name") -> str:
    """A registry or connected registry name: 5-50 ASCII letters and digits,
    starting with a letter. Returns it unchanged (case is kept for display)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        fail(field, f"'{name}' is not a valid name: use 5 to 50 letters and digits, starting with a letter.")
    return name


def normalize_repository(repo: str, field: str = "repositories") -> str:
    """One repository name, lower-cased and checked against the OCI name grammar."""
    value = (repo or "").strip().lower()
    if not value or len(value) > REPO_MAX_LENGTH or not REPO_RE.match(value):
        fail(field, f"'{repo}' is not a valid repository name: use lower-case path components "
                    "of letters and digits separated by '.', '_', '__' or '-', joined by '/'.")
    return value


def normalize_repositories(repos, field: str = "repositories", allow_empty: bool = False) -> list[str]:
    """A list of repository names: each normalised, duplicates rejected
    (case-insensitively), at most 500. Order is kept."""
    if isinstance(repos, str):
        repos = [repos]
    result: list[str] = []
    for repo in repos or []:
        value = normalize_repository(repo, field)
        if value in result:
            fail(field, f"repository '{value}' is listed more than once.")
        result.append(value)
    if not result and not allow_empty:
        fail(field, "at least one repository is required.")
    if len(result) > MAX_REPOSITORIES_PER_SCOPE_MAP:
        fail(field, f"{len(result)} repositories exceed the limit of "
                    f"{MAX_REPOSITORIES_PER_SCOPE_MAP} per scope map.")
    return result


def validate_mode(mode: str, field: str = "mode") -> str:
    """ReadOnly or ReadWrite, accepted in any case; returns the canonical spelling."""
    for canonical in MODES:
        if isinstance(mode, str) and mode.lower() == canonical.lower():
            return canonical
    fail(field, f"'{mode}' is not a valid mode: use ReadOnly or ReadWrite.")


def validate_child_mode(child_mode: str, parent_mode: str | None, field: str = "mode") -> None:
    """A ReadOnly connected-registry parent can only have ReadOnly children.
    parent_mode is None when the parent is the top-level registry."""
    if parent_mode == "ReadOnly" and child_mode != "ReadOnly":
        fail(field, "a ReadOnly parent can only have ReadOnly children.")


def validate_log_level(level: str, field: str = "log_level") -> str:
    for canonical in LOG_LEVELS:
        if isinstance(level, str) and level.lower() == canonical.lower():
            return canonical
    fail(field, f"'{level}' is not a valid log level: use one of {', '.join(LOG_LEVELS)}.")


def validate_cron(expr: str, field: str = "sync_schedule") -> str:
    """A 5-field cron expression, evaluated in UTC. Returns it with white
    space normalised."""
    if not isinstance(expr, str) or not expr.strip():
        fail(field, "a cron expression of 5 fields is required (minute hour day-of-month month day-of-week).")
    parts = expr.split()
    if len(parts) != 5:
        fail(field, f"'{expr}' has {len(parts)} field{'s' if len(parts) != 1 else ''}; "
                    "a cron expression has exactly 5 (minute hour day-of-month month day-of-week).")
    for part, (label, low, high) in zip(parts, CRON_FIELDS):
        for number in re.findall(r"\d+", part):
            if not low <= int(number) <= high and not ("/" in part and part.split("/")[1] == number):
                fail(field, f"'{expr}': {label} value {number} is out of range {low}-{high}.")
    normalised = " ".join(parts)
    if not croniter.is_valid(normalised):
        fail(field, f"'{expr}' is not a valid cron expression.")
    try:  # "0 0 31 2 *" parses but never fires: a registry would never sync.
        croniter(normalised, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except Exception:
        fail(field, f"'{expr}' never occurs.")
    return normalised


def is_continuous(schedule: str) -> bool:
    return " ".join((schedule or CONTINUOUS_SCHEDULE).split()) == CONTINUOUS_SCHEDULE


def parse_duration(value: str, field: str) -> dt.timedelta:
    """An ISO 8601 duration as a timedelta; Y counts as 365 days and M as 30.
    Zero, negative and malformed values are rejected."""
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text.upper().startswith("P") or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        fail(field, f"'{value}' is not an ISO 8601 duration (for example PT4H or P2D).")
    try:
        parsed = isodate.parse_duration(text.upper())
    except (isodate.ISO8601Error, ValueError, TypeError):
        fail(field, f"'{value}' is not an ISO 8601 duration (for example PT4H or P2D).")
    if isinstance(parsed, isodate.Duration):
        days = float(parsed.years) * 365 + float(parsed.months) * 30
        parsed = parsed.tdelta + dt.timedelta(days=days)
    if parsed <= dt.timedelta(0):
        fail(field, f"'{value}' must be a positive duration.")
    return parsed


def _validate_bounded_duration(value, field, bounds, low_text, high_text) -> str:
    delta = parse_duration(value, field)
    low, high = bounds
    if not low <= delta <= high:
        fail(field, f"'{value}' is out of range: it must be at least {low_text} and at most {high_text}.")
    return value.strip().upper()


def validate_sync_window(value: str, field: str = "sync_window") -> str:
    return _validate_bounded_duration(value, field, SYNC_WINDOW_BOUNDS, "PT1H", "P7D")


def validate_message_ttl(value: str, field: str = "message_ttl") -> str:
    return _validate_bounded_duration(value, field, MESSAGE_TTL_BOUNDS, "P1D", "P90D")


def normalize_sync_properties(schedule: str | None, window: str | None) -> tuple[str, str | None]:
    """Schedule and window as stored: the continuous schedule keeps no window;
    a non-continuous schedule without a window gets PT1H."""
    errors = {}
    try:
        schedule = validate_cron(schedule if schedule is not None else CONTINUOUS_SCHEDULE)
    except ValidationError as e:
        errors.update(e.message_dict)
    try:
        window = validate_sync_window(window) if window not in (None, "") else None
    except ValidationError as e:
        errors.update(e.message_dict)
    if errors:  # both said at once, so one correction fixes both
        raise ValidationError(errors)
    if is_continuous(schedule):
        return schedule, window
    return schedule, window or DEFAULT_SYNC_WINDOW


def _http_url(url: str, text: str, field: str, what: str, shape: str, path_allowed: bool) -> str:
    """text as an http(s) URL: a host, optional port (and path when allowed),
    never credentials (they would be stored and printed back), a query or a
    fragment; without a trailing slash. Errors name field and show shape."""
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        fail(field, f"{what} must not carry credentials: use {shape}.")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or any(c.isspace() for c in text) or (not path_allowed and parts.path.strip("/")):
        fail(field, f"'{url}' is not a valid {what.removeprefix('a ').removeprefix('the ')}: use {shape}.")
    try:
        parts.port
    except ValueError:
        fail(field, f"'{url}' has an invalid port.")
    return text.rstrip("/")


def validate_login_server(url: str, field: str = "login_server") -> str:
    """The URL of an OCI endpoint: http or https, a host, optional port, no
    path or query (https:// is assumed when no scheme is given)."""
    text = (url or "").strip()
    if text and "://" not in text:
        text = "https://" + text
    return _http_url(url, text, field, "a login server URL", "http(s)://host[:port], without a path",
                     path_allowed=False)


def validate_portal_url(url: str, field: str = "portal_url") -> str:
    """The portal as registries reach it (realm and events URLs are made from
    it): http or https, a host, optional port and path."""
    return _http_url(url, (url or "").strip(), field, "the portal URL",
                     "http(s)://host[:port][/path], as registries reach the portal", path_allowed=True)


def validate_listen_address(addr: str, field: str = "http_addr") -> str:
    """A registry's listen address: [HOST]:PORT with a port from 1 to 65535."""
    host, sep, port = (addr or "").strip().rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host) \
            or "/" in host:
        fail(field, f"'{addr}' is not a listen address: use [HOST]:PORT, such as :5000 or 127.0.0.1:5000.")
    return addr.strip()


# --- tokens and connection strings -----------------------------------------

TOKEN_STATUSES = ("enabled", "disabled")
PASSWORD_SLOTS = (1, 2)
PARENT_PROTOCOLS = ("https", "http")
EXPIRATION_DAYS_BOUNDS = (1, 3650)


def validate_token_status(status: str, field: str = "status") -> str:
    value = status.lower() if isinstance(status, str) else status
    if value not in TOKEN_STATUSES:
        fail(field, f"'{status}' is not a valid status: use enabled or disabled.")
    return value


def validate_password_slot(slot, field: str = "password") -> int:
    """1 or 2: a token has two passwords so one can be rotated while the other works."""
    try:
        value = int(str(slot).removeprefix("password"))
    except ValueError:
        value = None
    if value not in PASSWORD_SLOTS:
        fail(field, f"'{slot}' is not a password slot: use 1 or 2.")
    return value


def validate_expiration_days(days, field: str = "expiration_in_days") -> int:
    low, high = EXPIRATION_DAYS_BOUNDS
    try:
        value = int(str(days).strip()) if not isinstance(days, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None:
        fail(field, f"'{days}' is not a whole number of days (a password expires after {low} to {high} days).")
    if not low <= value <= high:
        fail(field, f"'{days}' is out of range: a password expires after {low} to {high} days.")
    return value


def validate_parent_protocol(protocol: str, parent_is_registry: bool, field: str = "parent_protocol") -> str:
    """https or http; a connected registry talks https to the top-level
    registry, http is allowed only towards a connected-registry parent."""
    value = protocol.lower() if isinstance(protocol, str) else protocol
    if value not in PARENT_PROTOCOLS:
        fail(field, f"'{protocol}' is not a valid protocol: use https or http.")
    if parent_is_registry and value != "https":
        fail(field, "the parent is the top-level registry, which is reached over https only; "
                    "http is allowed only when the parent is a connected registry.")
    return value


# --- client tokens ------------------------------------------------------------

TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{4,49}$")
REPOSITORY_ACTIONS = ("content/read", "content/write", "content/delete", "metadata/read", "metadata/write")
MAX_CLIENT_TOKENS = 50


def validate_token_name(name: str, field: str = "name") -> str:
    """A token name: 5 to 50 letters, digits and '-', starting with a letter or digit."""
    if not isinstance(name, str) or not TOKEN_NAME_RE.match(name):
        fail(field, f"'{name}' is not a valid token name: use 5 to 50 letters, digits and '-', "
                    "starting with a letter or digit.")
    return name


def repository_permission_actions(entries, field: str = "repository") -> list[str]:
    """[[REPO, ACTION, ...], ...] (the --repository flags) as scope-map
    actions, e.g. repositories/hello-world/content/read. Each repository once,
    with at least one of the actions az knows."""
    actions, seen = [], []
    for entry in entries or []:
        repo, *wanted = list(entry)
        repo = normalize_repository(repo, field)
        if repo in seen:
            fail(field, f"repository '{repo}' is given more than once.")
        seen.append(repo)
        if not wanted:
            fail(field, f"give '{repo}' at least one action: {', '.join(REPOSITORY_ACTIONS)}.")
        for action in wanted:
            if action.lower() not in REPOSITORY_ACTIONS:
                fail(field, f"'{action}' is not a repository action: use {', '.join(REPOSITORY_ACTIONS)}.")
            if f"repositories/{repo}/{action.lower()}" not in actions:
                actions.append(f"repositories/{repo}/{action.lower()}")
    if not actions:
        fail(field, "give at least one repository with its actions, or an existing scope map (--scope-map).")
    if len(seen) > MAX_REPOSITORIES_PER_SCOPE_MAP:
        fail(field, f"{len(seen)} repositories exceed the limit of {MAX_REPOSITORIES_PER_SCOPE_MAP} per scope map.")
    return actions


def validate_client_token_count(count: int, connected_registry_name: str, limit: int = MAX_CLIENT_TOKENS,
                                field: str = "add_client_tokens") -> None:
    if count > limit:
        fail(field, f"'{connected_registry_name}' would have {count} client tokens, more than the limit of "
                    f"{limit} per connected registry.")
