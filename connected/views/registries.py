"""The home page: the registries, each with its number of connected registries."""
from __future__ import annotations

from django.db.models import Count
from django.shortcuts import render

from connected.models import Registry

from . import events as events_views
from .base import page


@page
def home(request):
    registries = list(Registry.objects.annotate(connected_count=Count("connected_registries")).order_by("name"))
    for registry in registries:
        registry.events_state = events_views.registry_context(registry)["events"]
    return render(request, "connected/home.html", {"registries": registries})
