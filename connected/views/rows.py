"""Rows of connected registries for the list and status pages: one query for
any number of rows (latest run, pending run and, on the status page, the
pending sync messages as subqueries), tree order, the next sync window and
how far behind its parent each one is."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Count, Exists, IntegerField, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.timesince import timesince

from connected import health, schedule, validation
from django.urls import reverse

from connected.cli_output import iso_time, table_time
from connected.health_check import message_grace
from connected.models import ConnectedRegistry, SyncMessage, SyncRun

RUN_STATUS_LABELS = {status.value: status.label.lower() for status in SyncRun.Status}
ACTIVE_RUN = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)


def annotated(queryset):
    """Connected registries with their registry, parent and latest run, in one query."""
    latest = SyncRun.objects.filter(connected_registry=OuterRef("pk")).order_by("-queued_at", "-pk")
    return queryset.select_related("registry", "parent").annotate(
        latest_run_id=Subquery(latest.values("pk")[:1]),
        latest_run_status=Subquery(latest.values("status")[:1]),
        latest_run_tags_failed=Subquery(latest.values("tags_failed")[:1]),
        run_pending=Exists(SyncRun.objects.filter(connected_registry=OuterRef("pk"), status__in=ACTIVE_RUN)),
    )


def with_pending_messages(queryset, now: dt.datetime):
    """.pending_messages (how many sync messages wait) and .oldest_pending_at, as subqueries."""
    pending = SyncMessage.objects.pending(now).filter(connected_registry=OuterRef("pk")).order_by() \
        .values("connected_registry")
    return queryset.annotate(
        pending_messages=Coalesce(Subquery(pending.annotate(n=Count("pk")).values("n")[:1],
                                           output_field=IntegerField()), 0),
        oldest_pending_at=Subquery(pending.annotate(oldest=Min("created_at")).values("oldest")[:1]))


def filtered(queryset, mode="", state="", parent="", q=""):
    """The list page's filters: mode, connection state, parent ("-" for the
    registry itself) and a search in names and repositories."""
    if mode:
        queryset = queryset.filter(mode__iexact=mode)
    if state:
        queryset = queryset.filter(connection_state__iexact=state)
    if parent == "-":
        queryset = queryset.filter(parent__isnull=True)
    elif parent:
        queryset = queryset.filter(parent__name__iexact=parent)
    if q:
        queryset = queryset.filter(Q(name__icontains=q) | Q(repositories__icontains=q))
    return queryset


def in_tree_order(connected_registries) -> list[ConnectedRegistry]:
    """Each parent followed by its children (siblings by name), each given a
    .depth (0 for children of the registry itself, or when the parent is
    filtered out)."""
    present = {cr.pk for cr in connected_registries}
    children = defaultdict(list)
    for cr in connected_registries:
        children[cr.parent_id if cr.parent_id in present else None].append(cr)
    for siblings in children.values():
        siblings.sort(key=lambda cr: cr.name.lower())
    ordered, stack = [], [(cr, 0) for cr in reversed(children[None])]
    while stack:
        cr, depth = stack.pop()
        cr.depth = depth
        ordered.append(cr)
        stack.extend((child, depth + 1) for child in reversed(children[cr.pk]))
    return ordered


def decorate(rows) -> None:
    """What the row templates print, computed once in Python (hundreds of
    rows: `{% url %}` and date filters per row would dominate the page):
    links, the latest run's label, last sync as ISO and as UTC text."""
    prefixes = {}
    for cr in rows:
        registry_name = cr.registry.name
        if registry_name not in prefixes:
            prefixes[registry_name] = reverse("connected_registry_detail", args=[registry_name, "-"])[:-2]
        cr.detail_url = f"{prefixes[registry_name]}{cr.name}/"
        cr.latest_run_url = f"{cr.detail_url}runs/{cr.latest_run_id}/" if cr.latest_run_id else ""
        cr.latest_run_label = RUN_STATUS_LABELS.get(cr.latest_run_status, "")
        cr.last_sync_iso = iso_time(cr.last_sync_at)
        cr.last_sync_text = table_time(cr.last_sync_at) + " UTC" if cr.last_sync_at else ""
        cr.state_class = cr.connection_state.lower()


class WindowCalendar:
    """Next window of each (schedule, window), computed once per page."""

    def __init__(self, now: dt.datetime):
        self.now, self._cache = now, {}

    def describe(self, cr: ConnectedRegistry) -> dict:
        """{"text", "at"}: "continuous", "open until", "opens" with the instant."""
        key = (cr.sync_schedule, cr.sync_window)
        if key not in self._cache:
            self._cache[key] = self._compute(*key)
        return self._cache[key]

    def _compute(self, cron: str, window: str | None) -> dict:
        if validation.is_continuous(cron):
            return {"text": "continuous", "at": None}
        try:
            delta = validation.parse_duration(window or validation.DEFAULT_SYNC_WINDOW, "sync_window")
            current = schedule.window_containing(cron, delta, self.now)
            if current:
                return {"text": "open until", "at": current[1]}
            openings = schedule.next_window_openings(cron, delta, self.now, count=1)
        except Exception:  # stored before a rule existed: show it, do not fail the page
            return {"text": "unknown", "at": None}
        return {"text": "opens", "at": openings[0]} if openings else {"text": "always open", "at": None}


def behind(cr: ConnectedRegistry, now: dt.datetime) -> dict:
    """How far behind its parent: {"level": ok|warn|bad|idle, "text"}. From
    what exists now: time since the last sync, failed tags of the last run,
    the sync messages waiting (late once the oldest waited longer than the
    grace while it could move, see health.late_since: .late_since, set by
    status_rows) and whether a run is pending."""
    parts = []
    level = "ok"
    if cr.last_sync_at is None:
        parts.append("never synced")
        level = "bad"
    else:
        parts.append(f"synced {timesince(cr.last_sync_at, now).split(',')[0]} ago")
    if cr.latest_run_status == SyncRun.Status.FAILED:
        parts.append("last run failed")
        level = "bad"
    elif cr.latest_run_tags_failed:
        count = cr.latest_run_tags_failed
        parts.append(f"{count} tag{'s' if count != 1 else ''} failed in the last run")
        level = "bad" if level == "bad" else "warn"
    waiting = getattr(cr, "pending_messages", 0)
    if waiting:
        cutoff = getattr(cr, "late_since", None)
        late = cutoff is not None and cr.oldest_pending_at is not None and cr.oldest_pending_at <= cutoff
        parts.append(f"{waiting} change{'s' if waiting != 1 else ''} waiting"
                     + (f" (the oldest for {timesince(cr.oldest_pending_at, now).split(',')[0]})" if late else ""))
        if late:
            level = "bad" if level == "bad" else "warn"
        elif level == "ok":
            level = "idle"
    if cr.run_pending:
        parts.append("sync pending" if cr.latest_run_status == SyncRun.Status.QUEUED else "syncing")
        if level == "ok":
            level = "idle"
    return {"level": level, "text": "; ".join(parts)}


class LateMessages:
    """For each (schedule, window), computed once per page: pending sync
    messages created at or before this instant are late (health.late_since)."""

    def __init__(self, now: dt.datetime):
        self.now, self.grace, self._cache = now, message_grace(), {}

    def since(self, cr: ConnectedRegistry) -> dt.datetime | None:
        key = (cr.sync_schedule, cr.sync_window)
        if key not in self._cache:
            self._cache[key] = self._compute(*key)
        return self._cache[key]

    def _compute(self, cron: str, window: str | None) -> dt.datetime | None:
        try:
            delta = None if validation.is_continuous(cron) else validation.parse_duration(
                window or validation.DEFAULT_SYNC_WINDOW, "sync_window")
            return health.late_since(self.now, self.grace, cron, delta)
        except Exception:  # stored before a rule existed: do not fail the page
            return None


def status_rows(queryset, now: dt.datetime | None = None) -> list[ConnectedRegistry]:
    """Every row of the status page, grouped by registry, each group in tree
    order, with .next_window and .behind."""
    now = now or timezone.now()
    calendar = WindowCalendar(now)
    late = LateMessages(now)
    by_registry = defaultdict(list)
    for cr in with_pending_messages(annotated(queryset), now):
        by_registry[cr.registry.name.lower()].append(cr)
    rows = []
    for key in sorted(by_registry):
        rows += in_tree_order(by_registry[key])
    for cr in rows:
        window = calendar.describe(cr)
        cr.next_window, cr.next_window_at = window["text"], window["at"]
        cr.next_window_iso = iso_time(window["at"])
        cr.next_window_text = window["at"].strftime("%Y-%m-%d %H:%M UTC") if window["at"] else ""
        cr.late_since = late.since(cr) if cr.pending_messages else None
        cr.behind = behind(cr, now)
    decorate(rows)
    return rows
