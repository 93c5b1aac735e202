"""Mounted at /token/ by registry_portal.urls: the realm of every registry."""
from django.urls import path

from . import views

app_name = "tokenservice"
urlpatterns = [path("", views.token, name="token")]
