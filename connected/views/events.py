"""Events secrets in the pages: whether a registry (the top-level one, on the
home page) or a connected registry (its detail page) sends its webhook
events to the portal, how changes reach a connected registry, and, for
administrators, "Generate events secret".

Each section is its own htmx partial, loaded by its page (hx-trigger="load")
and re-rendered by the generation. A new secret is answered once, inside
that answer (with the Authorization header line and the `notifications:`
block for the registry's config; Cache-Control: no-store): never stored in
the session, never logged, never in a later GET. The generation is
connected.events.generate_secret, audited as (user, web) without the secret.
"""
from __future__ import annotations

import datetime as dt
import json
import textwrap

from django.conf import settings
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from connected import events
from connected.messages import EventSource, delivering
from connected.models import ConnectedRegistry
from connected.sync.dispatch import events_wired
from connected.tokenservice.registry_config import notifications_block

from .base import action, actor, connected_registry_or_404, no_store, page, registry_or_404


# --- what the sections show ---------------------------------------------------------

def interval_text(seconds: float) -> str:
    """600 -> '10 min', 30 -> '30 s', 90 -> '90 s'."""
    seconds = int(round(seconds))
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"


def ago_text(when: dt.datetime, now: dt.datetime) -> str:
    """'3 hours ago', 'less than a minute ago'."""
    if now - when < dt.timedelta(minutes=1):
        return "less than a minute ago"
    return timesince(when, now).split(",")[0] + " ago"


def source_state(source: EventSource | None, now=None) -> dict:
    """{"state": "received" | "wired" | "none", "last_event_at", "ago", "earlier_ago"}
    of an event source. An event that came before the current secret was
    made (with the one it replaced) does not make it "received": the
    registry may not have the new secret yet (earlier_ago says when)."""
    state = {"state": "none", "last_event_at": None, "ago": "", "earlier_ago": ""}
    if source is None:
        return state
    now = now or timezone.now()
    last = source.last_event_at
    if not source.is_delivering():
        return {**state, "state": "wired", "earlier_ago": ago_text(last, now) if last else ""}
    return {**state, "state": "received", "last_event_at": last, "ago": ago_text(last, now)}


def registry_source(registry) -> EventSource | None:
    """The top-level registry's own event source, or None."""
    return registry.event_sources.filter(connected_registry__isnull=True).first()


def delivery(cr: ConnectedRegistry) -> dict:
    """How changes reach cr: {"wired", "text", "missing": [who sends no events]}
    (events_wired decides; missing only explains it)."""
    portal = settings.PORTAL
    wired = events_wired(cr)
    full = interval_text(portal["FULL_COMPARISON_INTERVAL_SECONDS"])
    poll = interval_text(portal["CONTINUOUS_SYNC_INTERVAL_SECONDS"])
    if cr.is_continuous():
        text = (f"changes arrive as sync messages (safety-net full comparison every {full})" if wired
                else f"no events wired: the portal compares in full every {poll}")
    else:
        text = ("changes arrive as sync messages, applied in its sync window (a full comparison when they "
                "cannot be trusted)" if wired
                else "no events wired: each sync window opens with a full comparison")
    missing = []
    if not wired:
        if cr.parent_id is None:
            if not delivering(registry_source(cr.registry)):
                missing.append({"who": f"registry {cr.registry.name}", "home": True})
        elif cr.parent.mode == ConnectedRegistry.Mode.READ_WRITE and not delivering(cr.parent.event_source_or_none()):
            missing.append({"who": f"its parent {cr.parent.name}", "parent": cr.parent.name})
        if cr.mode == ConnectedRegistry.Mode.READ_WRITE and not delivering(cr.event_source_or_none()):
            missing.append({"who": f"{cr.name} itself", "self": True})
    return {"wired": wired, "text": text, "missing": missing}


def notifications_text(secret: str) -> str:
    """The `notifications:` section for the registry's config: pretty JSON
    (valid YAML) under the key, ready to paste."""
    return "notifications:\n" + textwrap.indent(json.dumps(notifications_block(secret), indent=2), "  ")


def once_context(secret: str, who: str, key: str) -> dict:
    return {"secret": secret, "who": who, "key": key, "header": f"Authorization: Bearer {secret}",
            "notifications": notifications_text(secret),
            "events_url": notifications_block(secret)["endpoints"][0]["url"]}


def registry_context(registry, once: dict | None = None) -> dict:
    return {"registry": registry, "events": source_state(registry_source(registry)), "once": once}


def cr_context(cr: ConnectedRegistry, once: dict | None = None) -> dict:
    return {"registry": cr.registry, "cr": cr, "events": source_state(cr.event_source_or_none()),
            "delivery": delivery(cr), "once": once}


# --- views -------------------------------------------------------------------------

@page
def registry_events(request, registry_name):
    """The events line of a registry's card on the home page (htmx partial)."""
    registry = registry_or_404(registry_name)
    if not request.htmx:
        return redirect("home")
    return render(request, "connected/_registry_events.html", registry_context(registry))


@page
def connected_registry_events(request, registry_name, name):
    """The events section of a connected registry's page (htmx partial)."""
    cr = connected_registry_or_404(registry_name, name)
    if not request.htmx:
        return redirect("connected_registry_detail", registry_name=cr.registry.name, name=cr.name)
    return render(request, "connected/_cr_events.html", cr_context(cr))


def _answer_once(request, partial: str, context: dict, back_url: str):
    """The section with the new secret in it (htmx), or a page of its own
    for a plain POST; never cached."""
    if request.htmx:
        return no_store(render(request, partial, context))
    return no_store(render(request, "connected/events_secret.html", {**context, "back_url": back_url}))


@action
def registry_events_secret(request, registry_name):
    """A new events secret for the top-level registry, answered once."""
    registry = registry_or_404(registry_name)
    _source, secret = events.generate_secret(registry, None, actor=actor(request))
    who = f"registry {registry.name}"
    return _answer_once(request, "connected/_registry_events.html",
                        registry_context(registry, once_context(secret, who, f"reg{registry.pk}")),
                        back_url=reverse("home"))


@action
def connected_registry_events_secret(request, registry_name, name):
    """A new events secret for a connected registry, answered once."""
    cr = connected_registry_or_404(registry_name, name)
    _source, secret = events.generate_secret(cr.registry, cr, actor=actor(request))
    who = f"connected registry {cr.name}"
    return _answer_once(request, "connected/_cr_events.html",
                        cr_context(cr, once_context(secret, who, f"cr{cr.pk}")),
                        back_url=reverse("connected_registry_detail", args=[cr.registry.name, cr.name]))
