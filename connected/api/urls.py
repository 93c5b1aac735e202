from django.urls import path

from . import events

urlpatterns = [
    path("events/", events.receive, name="events"),
]
