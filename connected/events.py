"""Registry events in, sync messages out.

parse_envelope() reads distribution's notification body; receive() stores
each event once per source (distribution resends an event until it gets a
2xx) and turns each manifest push or delete into sync messages for the
connected registries it concerns (concerned()):

- a change at a registry goes down to each connected registry that syncs
  from it (its children) and syncs the repository;
- a change pushed to a ReadWrite connected registry by anyone but the sync
  also goes up: the registry itself gets a message, and its sync takes the
  change to the parent;
- nobody gets a message for a change its own sync made.

Changes the portal's syncs make (the actor is a sync token) are echoes: the
sync run that made them already sends the messages they call for, further
down the tree and to siblings (see notify_after_run), so a registry whose
notifications are not configured still passes changes on.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import validation
from .messages import EventSource, ReceivedEvent, SyncMessage

log = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MAX_EVENTS_PER_POST = 1000


class EnvelopeError(ValueError):
    """The body is not a notification envelope; the message names the field."""


@dataclass(frozen=True)
class Event:
    id: str
    action: str
    repository: str
    tag: str
    digest: str
    media_type: str
    actor: str
    timestamp: dt.datetime | None

    def is_manifest_change(self) -> bool:
        """A push or delete of a manifest (blobs, pulls and mounts change no tag)."""
        if self.action not in ("push", "delete"):
            return False
        # Deletes of manifests by digest carry no media type in distribution 2.8.
        return self.action == "delete" or self.media_type in MANIFEST_TYPES or bool(self.tag)


def parse_envelope(body: bytes) -> list[Event]:
    """The events of a notification body; EnvelopeError when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise EnvelopeError(f"body: not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise EnvelopeError("events: required, a list of events")
    if len(data["events"]) > MAX_EVENTS_PER_POST:
        raise EnvelopeError(f"events: at most {MAX_EVENTS_PER_POST} per request")
    events = []
    for i, raw in enumerate(data["events"]):
        where = f"events[{i}]"
        if not isinstance(raw, dict):
            raise EnvelopeError(f"{where}: must be an object")
        target = raw.get("target") if isinstance(raw.get("target"), dict) else None
        event_id, action = raw.get("id"), raw.get("action")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 100:
            raise EnvelopeError(f"{where}.id: {_missing_or(event_id, 'a string of 1 to 100 characters')}")
        if not isinstance(action, str) or not action:
            raise EnvelopeError(f"{where}.action: {_missing_or(action, 'a string (push, pull, mount or delete)')}")
        if target is None:
            raise EnvelopeError(f"{where}.target: {_missing_or(raw.get('target'), 'an object')}")
        repository = target.get("repository")
        if not isinstance(repository, str) or not repository:
            raise EnvelopeError(f"{where}.target.repository: {_missing_or(repository, 'a repository name')}")
        repository = repository.lower()
        if len(repository) > validation.REPO_MAX_LENGTH or not validation.REPO_RE.match(repository):
            raise EnvelopeError(f"{where}.target.repository: a repository name of at most "
                                f"{validation.REPO_MAX_LENGTH} characters (lower-case path components)")
        tag = _text(target, "tag", validation.TAG_RE, where,
                    "a tag: letters, digits, _ . -, at most 128 characters, not starting with . or -")
        digest = _text(target, "digest", validation.DIGEST_RE, where,
                       f"a digest such as sha256:<64 hex digits>, at most {validation.DIGEST_MAX_LENGTH} characters")
        if len(digest) > validation.DIGEST_MAX_LENGTH:
            raise EnvelopeError(f"{where}.target.digest: at most {validation.DIGEST_MAX_LENGTH} characters")
        actor = raw.get("actor") if isinstance(raw.get("actor"), dict) else {}
        events.append(Event(
            id=event_id, action=action, repository=repository, tag=tag, digest=digest,
            media_type=str(target.get("mediaType") or ""), actor=str(actor.get("name") or ""),
            timestamp=_timestamp(raw.get("timestamp"), where)))
    return events


def _missing_or(value, rule: str) -> str:
    """'required, <rule>' when the value is absent or empty, 'must be <rule>' when it is the wrong thing."""
    return f"required, {rule}" if value is None or value == "" else f"must be {rule}, not {json.dumps(value)[:40]}"


def _text(target: dict, field: str, grammar, where: str, rule: str) -> str:
    """target[field] ('' when absent or empty) when it matches grammar; EnvelopeError naming it otherwise."""
    value = target.get(field)
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not grammar.match(value):
        raise EnvelopeError(f"{where}.target.{field}: {rule}")
    return value


def _timestamp(value, where: str) -> dt.datetime | None:
    """The event's time (distribution writes RFC 3339), None when it has none;
    EnvelopeError for anything else."""
    if value is None or value == "":
        return None
    rule = f"{where}.timestamp: must be an RFC 3339 date and time such as 2026-12-04T07:30:00Z"
    if not isinstance(value, str):
        raise EnvelopeError(f"{rule}, not {json.dumps(value)[:40]}")
    try:
        parsed = parse_datetime(value)
    except ValueError as e:
        raise EnvelopeError(f"{where}.timestamp: not a valid date and time ({e})") from None
    if parsed is None:
        raise EnvelopeError(f"{rule}, not {json.dumps(value)[:40]}")
    return parsed


def concerned(source: EventSource, repository: str, actor: str) -> list[tuple[object, str]]:
    """(connected registry, direction) for each that must apply a change of
    repository made by actor at source."""
    from .models import ConnectedRegistry

    registry, origin_cr = source.registry, source.connected_registry
    children = ConnectedRegistry.objects.select_related("sync_token").filter(
        registry=registry, parent=origin_cr)
    made_by_sync = _sync_token_owner(registry, actor)
    result = [(cr, SyncMessage.Direction.DOWN) for cr in children
              if repository in cr.repositories and made_by_sync != cr.pk]
    if origin_cr is not None and origin_cr.mode == ConnectedRegistry.Mode.READ_WRITE \
            and repository in origin_cr.repositories and made_by_sync is None:
        result.append((origin_cr, SyncMessage.Direction.UP))
    return result


def _sync_token_owner(registry, actor: str):
    """The pk of the connected registry whose sync token actor is, else None."""
    from .models import Token

    if not actor:
        return None
    return Token.objects.filter(registry=registry, name__iexact=actor, connected_registry__isnull=False) \
        .values_list("connected_registry_id", flat=True).first()


def add_message(cr, *, action: str, repository: str, tag: str, digest: str, origin: str, direction: str,
                event: ReceivedEvent | None = None, now: dt.datetime | None = None) -> SyncMessage | None:
    """A new message for cr, unless an identical one is still pending (then
    None). Expires at now + cr's message TTL."""
    now = now or timezone.now()
    same = SyncMessage.objects.pending(now).filter(connected_registry=cr, action=action, repository=repository,
                                                   tag=tag, digest=digest, direction=direction)
    if same.exists():
        return None
    ttl = validation.parse_duration(cr.message_ttl, "message_ttl")
    return SyncMessage.objects.create(
        connected_registry=cr, event=event, origin=origin[:200], direction=direction, action=action,
        repository=repository, tag=tag, digest=digest, created_at=now, expires_at=now + ttl)


@dataclass
class Received:
    events: int = 0
    duplicates: int = 0
    ignored: int = 0
    messages: int = 0
    concerned: set = None  # pks of the connected registries that got a message

    def as_json(self) -> dict:
        return {"events": self.events, "duplicates": self.duplicates, "ignored": self.ignored,
                "messages": self.messages}


def receive(source: EventSource, events: list[Event], now: dt.datetime | None = None) -> Received:
    """Store the events not seen before and make their messages. Returns the
    counts, and which connected registries got messages."""
    now = now or timezone.now()
    outcome = Received(concerned=set())
    for event in events:
        if not event.is_manifest_change():
            outcome.ignored += 1
            continue
        try:
            with transaction.atomic():
                stored = ReceivedEvent.objects.create(
                    source=source, event_id=event.id, action=event.action, repository=event.repository,
                    tag=event.tag, digest=event.digest, actor=event.actor[:200],
                    occurred_at=event.timestamp, received_at=now)
                stored.messages_created, stored.note = _fan_out(source, event, stored, now, outcome)
                stored.save(update_fields=["messages_created", "note"])
        except IntegrityError:
            outcome.duplicates += 1  # seen before: distribution resent it
            continue
        outcome.events += 1
    type(source).objects.filter(pk=source.pk).update(last_event_at=now)
    return outcome


def _fan_out(source: EventSource, event: Event, stored: ReceivedEvent, now: dt.datetime,
             outcome: Received) -> tuple[int, str]:
    targets = concerned(source, event.repository, event.actor)
    if not targets:
        if _sync_token_owner(source.registry, event.actor) is not None:
            return 0, "made by a sync: its run passes the change on"
        return 0, "no connected registry syncs this repository from here"
    made = 0
    for cr, direction in targets:
        message = add_message(cr, action=event.action, repository=event.repository, tag=event.tag,
                              digest=event.digest, origin=source.describe(), direction=direction, event=stored,
                              now=now)
        if message is not None:
            made += 1
            outcome.concerned.add(cr.pk)
    outcome.messages += made
    return made, "" if made else "the same change is already waiting"


def generate_secret(registry, connected_registry=None, actor=None) -> tuple[EventSource, str]:
    """A new events secret for the registry or connected registry (the old
    one stops working), audited without the secret. Returns the source and
    the secret in clear, to be shown once."""
    from .audit import record

    with transaction.atomic():
        source, clear = EventSource.generate(registry, connected_registry)
        if connected_registry is None:
            record(actor, "registry.generateEventsSecret", "registry", registry.name, registry.name)
        else:
            record(actor, "connectedRegistry.generateEventsSecret", "connectedRegistry", connected_registry.name,
                   registry.name)
    return source, clear


def notify_after_run(cr, tags, now: dt.datetime | None = None) -> set[int]:
    """After a run of cr changed tags (TagResults), the messages those
    changes call for: tags that came down go on to cr's children; tags cr
    pushed up go to the parent's other children (and further up when the
    parent is a ReadWrite connected registry). Returns the pks concerned."""
    from .models import ConnectedRegistry

    now = now or timezone.now()
    origin = f"sync of connected registry {cr.name}"
    concerned_pks: set[int] = set()

    def send(targets, change, direction):
        for target in targets:
            if change.repository not in target.repositories:
                continue
            action = SyncMessage.Action.DELETE if change.outcome == "deleted" else SyncMessage.Action.PUSH
            # A conflict wrote a second tag (the kept version, named in the
            # ledger's reason only): the whole repository is compared.
            tag, digest = ("", "") if change.outcome == "conflict" else (change.tag, change.digest)
            if add_message(target, action=action, repository=change.repository, tag=tag,
                           digest=digest, origin=origin, direction=direction, now=now):
                concerned_pks.add(target.pk)

    children = list(ConnectedRegistry.objects.filter(parent=cr))
    siblings = list(ConnectedRegistry.objects.filter(registry_id=cr.registry_id, parent_id=cr.parent_id)
                    .exclude(pk=cr.pk))
    parent = cr.parent
    for change in tags:
        if change.outcome in ("copied", "deleted", "conflict"):
            send(children, change, SyncMessage.Direction.DOWN)
        if change.outcome in ("pushed", "conflict"):
            send(siblings, change, SyncMessage.Direction.DOWN)
            if parent is not None and parent.mode == ConnectedRegistry.Mode.READ_WRITE:
                send([parent], change, SyncMessage.Direction.UP)
    return concerned_pks
