from django.apps import AppConfig


class ConnectedConfig(AppConfig):
    name = "connected"
    verbose_name = "Connected registries"
