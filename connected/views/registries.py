"""The home page: the registries, each with its number of connected registries."""
from __future__ import annotations

from django.db.models import Count
from django.shortcuts import render

from connected.models import Registry

from .base import page


@page
def home(request):
    registries = Registry.objects.annotate(connected_count=Count("connected_registries")).order_by("name")
    return render(request, "connected/home.html", {"registries": registries})
