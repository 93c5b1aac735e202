from django.urls import path, re_path

from . import events, gateway

# /gateway/<registry>/<connected registry>/...; names never hold a slash.
GATEWAY = r"^gateway/(?P<registry_name>[^/]+)/(?P<name>[^/]+)/"

urlpatterns = [
    path("events/", events.receive, name="events"),
    re_path(GATEWAY + r"config/?$", gateway.config, name="gateway_config"),
    re_path(GATEWAY + r"messages/?$", gateway.messages, name="gateway_messages"),
    re_path(GATEWAY + r"messages/ack/?$", gateway.acknowledge, name="gateway_acknowledge"),
]
